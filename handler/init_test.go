package handler

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestNoInitWork checks that linking lokislog costs no work at start-up:
// no lokislog package allocates during its initialisation (a package-level
// fmt.Errorf or map literal would), as issue 4's footprint target asks. It
// builds testdata/initcheck and reads GODEBUG=inittrace=1's report.
func TestNoInitWork(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		t.Skipf("no go command at %s to build the check program: %v", goBin, err)
	}
	bin := filepath.Join(t.TempDir(), "initcheck")
	if out, err := exec.Command(goBin, "build", "-o", bin, "./testdata/initcheck").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// init github.com/lokislog/lokislog/exporter @1.9 ms, 0 ms clock, 0 bytes, 0 allocs
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "init" || !strings.HasPrefix(f[1], "github.com/lokislog/lokislog/") {
			continue
		}
		seen++
		bytes, allocs := "", ""
		for i := 1; i < len(f); i++ {
			switch strings.TrimSuffix(f[i], ",") {
			case "bytes":
				bytes = f[i-1]
			case "allocs":
				allocs = f[i-1]
			}
		}
		if bytes != "0" || allocs != "0" {
			t.Errorf("%s allocates at init (%s bytes, %s allocs): %s", f[1], bytes, allocs, sc.Text())
		}
	}
	if seen == 0 {
		t.Fatalf("inittrace reported no lokislog package; output:\n%s", out)
	}
}
