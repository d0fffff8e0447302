// pulumi-language-nodejs with RunPlugin: a thin front for the Node.js language host that
// scripts/tools.sh builds from sdk/v3 v3.68.0 (see ../pulumi-language-nodejs/).
//
// That host runs Pulumi programs but answers RunPlugin with "not supported", and the CLI
// starts every policy pack given as a directory (`pulumi preview --policy-pack policy`)
// through its language host's RunPlugin. This front starts the old host, forwards every
// LanguageRuntime call to it unchanged, and answers RunPlugin itself the way the Node.js
// host that ships with the Pulumi CLI does: it runs @pulumi/pulumi's
// cmd/run-policy-pack (analyzers) or cmd/run-plugin (other kinds), resolved from the
// plugin's own directory, and streams the process's output back to the engine.
//
// The old host is found at ../libexec/pulumi-language-nodejs relative to this binary, or
// at $ZCP_NODEJS_LANGUAGE_HOST.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: %v\n", err)
		os.Exit(1)
	}
}

func innerHostPath() (string, error) {
	if p := os.Getenv("ZCP_NODEJS_LANGUAGE_HOST"); p != "" {
		return p, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	self, err = filepath.EvalSymlinks(self)
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(self), "..", "libexec", "pulumi-language-nodejs"), nil
}

func run(args []string) error {
	innerPath, err := innerHostPath()
	if err != nil {
		return fmt.Errorf("locating the inner language host: %w", err)
	}

	// The inner host gets exactly the engine's arguments and prints its port first, as every
	// plugin does; the rest of its stdout and all of its stderr pass through.
	inner := exec.Command(innerPath, args...)
	inner.Stderr = os.Stderr
	innerOut, err := inner.StdoutPipe()
	if err != nil {
		return err
	}
	if err := inner.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", innerPath, err)
	}
	stopInner := func() { _ = inner.Process.Kill() }
	defer stopInner()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		stopInner()
		os.Exit(1)
	}()

	lines := bufio.NewReader(innerOut)
	portLine, err := lines.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the inner language host's port: %w", err)
	}
	var innerPort int
	if _, err := fmt.Sscanf(portLine, "%d", &innerPort); err != nil {
		return fmt.Errorf("the inner language host printed %q, not a port", portLine)
	}

	conn, err := grpc.NewClient(
		fmt.Sprintf("127.0.0.1:%d", innerPort),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(frameCodec{}), grpc.MaxCallRecvMsgSize(maxMessageSize)),
	)
	if err != nil {
		return err
	}
	defer conn.Close()

	listener, err := listenLoopback()
	if err != nil {
		return err
	}
	server := grpc.NewServer(
		grpc.ForceServerCodec(frameCodec{}),
		grpc.MaxRecvMsgSize(maxMessageSize),
		grpc.UnknownServiceHandler(frontHandler(conn)),
	)
	fmt.Printf("%d\n", listener.port)

	// The engine stops a language host by killing its process group, which holds the inner
	// host too. Should the inner host exit first, so does this front.
	innerDone := make(chan error, 1)
	go func() {
		_, _ = io.Copy(os.Stdout, lines) // until the inner host closes its stdout
		innerDone <- inner.Wait()
	}()
	serveDone := make(chan error, 1)
	go func() { serveDone <- server.Serve(listener) }()
	select {
	case err := <-innerDone:
		server.Stop()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		return err
	case err := <-serveDone:
		return err
	}
}
