package bench

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/lokislog/lokislog/bench/internal/contest"
	"github.com/lokislog/lokislog/bench/internal/receiver"
	"github.com/lokislog/lokislog/bench/internal/receiver/ctl"
)

// roleEnv, set to "receiver", makes the test binary run the receiver: the
// benchmarks re-execute themselves so that the receiver is a separate
// process without building cmd/receiver first.
const roleEnv = "LOKISLOG_BENCH_ROLE"

var (
	recvOnce sync.Once
	recv     *ctl.Process
	recvErr  error
)

func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "receiver" {
		if err := receiver.Serve("127.0.0.1:0", os.Stdout, true); err != nil {
			fmt.Fprintln(os.Stderr, "receiver:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if recv != nil {
		recv.Close()
	}
	os.Exit(code)
}

// receiverURL starts the receiver process on first use.
func receiverURL(tb testing.TB) string {
	recvOnce.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			recvErr = err
			return
		}
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), roleEnv+"=receiver")
		recv, recvErr = ctl.Start(cmd)
	})
	if recvErr != nil {
		tb.Fatalf("start receiver: %v", recvErr)
	}
	return recv.URL
}

// BenchmarkHandle is Handle of every contestant with the workload's record
// from 4 goroutines; the shipping ones push to the receiver.
func BenchmarkHandle(b *testing.B) {
	for _, c := range contest.All {
		b.Run(c.Name, func(b *testing.B) {
			contest.BenchHandle(b, c, contest.Env{ReceiverURL: receiverURL(b), Dir: b.TempDir()})
		})
	}
}

// BenchmarkLog is the same through slog.Logger.Info with the workload's
// arguments, as an application calls it.
func BenchmarkLog(b *testing.B) {
	for _, c := range contest.All {
		b.Run(c.Name, func(b *testing.B) {
			contest.BenchLog(b, c, contest.Env{ReceiverURL: receiverURL(b), Dir: b.TempDir()})
		})
	}
}
