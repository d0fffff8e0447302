package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// runPlugin runs a Node.js plugin (a policy pack, or a provider with a PulumiPlugin.yaml)
// from its directory with the @pulumi/pulumi found from that directory, as the CLI's own
// Node.js host does: analyzers get their arguments then the directory, and run inside it;
// other plugins get the directory then their arguments, and run in the engine's directory.
func runPlugin(req *pulumirpc.RunPluginRequest, server pulumirpc.LanguageRuntime_RunPluginServer) error {
	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return err
	}
	defer closer.Close()

	dir := req.GetInfo().GetProgramDirectory()
	if dir == "" {
		return errors.New("RunPlugin: the request names no program directory")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return fmt.Errorf("RunPlugin: node is not on PATH: %w", err)
	}
	analyzer := req.GetKind() == string(apitype.AnalyzerPlugin)
	runner := "run-plugin"
	if analyzer {
		runner = "run-policy-pack"
	}
	runPath, err := findModule(dir, filepath.Join("@pulumi", "pulumi", "cmd", runner))
	if err != nil {
		return err
	}

	args := []string{runPath}
	cmd := exec.Command(node)
	if analyzer {
		args = append(append(args, req.GetArgs()...), dir)
		cmd.Dir = dir
	} else {
		args = append(append(args, dir), req.GetArgs()...)
		cmd.Dir = req.GetPwd()
	}
	cmd.Args = append([]string{node}, args...)
	cmd.Env = req.GetEnv()
	if len(cmd.Env) == 0 {
		cmd.Env = os.Environ()
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr

	// The engine ends a plugin by cancelling this call.
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("RunPlugin: starting node: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-server.Context().Done():
		_ = cmd.Process.Kill()
		err = <-waited
	}
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("plugin %s exited with code %d", dir, exit.ExitCode())
		}
		return err
	}
	return closer.Close()
}

// findModule resolves a package path from dir the way Node does: node_modules in dir and
// every parent.
func findModule(dir, module string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		candidate := filepath.Join(d, "node_modules", module)
		if _, err := os.Stat(candidate); err == nil {
			return candidate, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("RunPlugin: %s is not installed in %s or any folder above it; "+
				"install the plugin's dependencies (npm install)", module, dir)
		}
	}
}
