package main

import (
	"errors"
	"fmt"
	"io"
	"net"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// The engine's own limit for plugin messages (sdk/go/common/util/rpcutil).
const maxMessageSize = 400 * 1024 * 1024

// frame is one gRPC message passed through as bytes.
type frame struct{ data []byte }

// frameCodec passes frames through untouched and encodes the messages the front builds
// itself (RunPlugin's request and responses) as protobuf.
type frameCodec struct{}

func (frameCodec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case *frame:
		return m.data, nil
	case proto.Message:
		return proto.Marshal(m)
	}
	return nil, fmt.Errorf("cannot encode %T", v)
}

func (frameCodec) Unmarshal(data []byte, v any) error {
	switch m := v.(type) {
	case *frame:
		m.data = append([]byte(nil), data...)
		return nil
	case proto.Message:
		return proto.Unmarshal(data, m)
	}
	return fmt.Errorf("cannot decode into %T", v)
}

func (frameCodec) Name() string { return "proto" }

type loopbackListener struct {
	net.Listener
	port int
}

func listenLoopback() (*loopbackListener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &loopbackListener{Listener: l, port: l.Addr().(*net.TCPAddr).Port}, nil
}

// frontHandler answers RunPlugin and forwards every other call, unary or streaming, to the
// inner host with its metadata, headers, trailers and status.
func frontHandler(conn *grpc.ClientConn) grpc.StreamHandler {
	return func(_ any, server grpc.ServerStream) error {
		method, ok := grpc.MethodFromServerStream(server)
		if !ok {
			return errors.New("no method on the stream")
		}
		if method == pulumirpc.LanguageRuntime_RunPlugin_FullMethodName {
			req := &pulumirpc.RunPluginRequest{}
			if err := server.RecvMsg(req); err != nil {
				return err
			}
			return runPlugin(req, &runPluginStream{ServerStream: server})
		}
		return forward(conn, method, server)
	}
}

func forward(conn *grpc.ClientConn, method string, server grpc.ServerStream) error {
	ctx := server.Context()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ctx = metadata.NewOutgoingContext(ctx, md.Copy())
	}
	client, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}

	requestsDone := make(chan error, 1)
	go func() {
		for {
			f := &frame{}
			if err := server.RecvMsg(f); err != nil {
				if errors.Is(err, io.EOF) {
					requestsDone <- client.CloseSend()
				} else {
					requestsDone <- err
				}
				return
			}
			if err := client.SendMsg(f); err != nil {
				requestsDone <- err
				return
			}
		}
	}()

	header, err := client.Header()
	if err == nil && header != nil {
		if err := server.SendHeader(header); err != nil {
			return err
		}
	}
	for {
		f := &frame{}
		if err := client.RecvMsg(f); err != nil {
			server.SetTrailer(client.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err // the inner host's status, passed on as is
		}
		if err := server.SendMsg(f); err != nil {
			return err
		}
	}
}

// runPluginStream gives the generic stream RunPlugin's typed Send.
type runPluginStream struct{ grpc.ServerStream }

func (s *runPluginStream) Send(m *pulumirpc.RunPluginResponse) error { return s.SendMsg(m) }
