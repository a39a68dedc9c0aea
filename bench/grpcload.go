package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

// grpcLoad submits batches over the TaskService's SubmitStream on the
// master's Unix socket.
type grpcLoad struct {
	conn  *grpc.ClientConn
	tasks []*pb.TaskInput
}

func newGRPCLoad(socket, kind, payload string, n int) (*grpcLoad, error) {
	conn, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", socket, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pb.NewTaskServiceClient(conn).Stats(ctx, &pb.StatsRequest{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TaskService.Stats on %s: %w", socket, err)
	}
	tasks := make([]*pb.TaskInput, n)
	for i := range tasks {
		tasks[i] = &pb.TaskInput{Kind: kind, Payload: []byte(payload)}
	}
	return &grpcLoad{conn: conn, tasks: tasks}, nil
}

func (g *grpcLoad) Close() error { return g.conn.Close() }

// submit sends batches batches over streams streams at once, at most 8
// unanswered on each; a batch the master refuses (queue full) is sent
// again after a pause.
func (g *grpcLoad) submit(ctx context.Context, batches, streams int) (loadResult, error) {
	var (
		accepted atomic.Int64
		refused  atomic.Int64
		res      loadResult
		once     sync.Once
		mu       sync.Mutex
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		cancel()
	}
	work := make(chan struct{}, batches) // one ticket per batch still to send
	for range batches {
		work <- struct{}{}
	}
	allDone := make(chan struct{})
	client := pb.NewTaskServiceClient(g.conn)
	for s := 0; s < streams; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream, err := client.SubmitStream(ctx)
			if err != nil {
				fail(fmt.Errorf("SubmitStream: %w", err))
				return
			}
			const window = 8
			slots := make(chan struct{}, window)
			recvDone := make(chan struct{})
			go func() {
				defer close(recvDone)
				for {
					resp, err := stream.Recv()
					if err != nil {
						if !errors.Is(err, io.EOF) && ctx.Err() == nil {
							fail(fmt.Errorf("SubmitStream recv: %w", err))
						}
						return
					}
					<-slots
					if e := resp.GetError(); e != nil {
						if e.GetCode() != "queue_full" {
							fail(fmt.Errorf("SubmitStream batch %d refused: %s: %s", resp.GetSeq(), e.GetCode(), e.GetMessage()))
							return
						}
						refused.Add(1)
						time.Sleep(5 * time.Millisecond)
						work <- struct{}{} // room: at most batches tickets exist
						continue
					}
					mu.Lock()
					res.Last = time.Now()
					mu.Unlock()
					if accepted.Add(1) == int64(batches) {
						close(allDone)
					}
				}
			}()
			defer func() { <-recvDone }()
			seq := uint64(0)
			for {
				select {
				case <-work:
				case <-allDone:
					_ = stream.CloseSend()
					return
				case <-ctx.Done():
					return
				}
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return
				}
				seq++
				once.Do(func() { res.First = time.Now() })
				if err := stream.Send(&pb.SubmitRequest{Tasks: g.tasks, Seq: seq}); err != nil {
					fail(fmt.Errorf("SubmitStream send: %w", err))
					return
				}
			}
		}()
	}
	wg.Wait()
	res.Batches = int(accepted.Load())
	res.Refused = int(refused.Load())
	if firstErr != nil {
		return res, firstErr
	}
	if res.Batches < batches {
		return res, fmt.Errorf("%d of %d batches accepted: %w", res.Batches, batches, context.Cause(ctx))
	}
	return res, nil
}
