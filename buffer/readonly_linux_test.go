//go:build linux

package buffer

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadOnlyFilesystem mounts a read-only tmpfs (it needs root) and checks
// that a spool there is refused at New with an error naming the directory,
// rather than failing later. Read-only errors while running (EROFS on a
// write) are covered through the fault-injecting filesystem.
func TestReadOnlyFilesystem(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_RDONLY, "size=1m"); err != nil {
		t.Skipf("cannot mount a read-only tmpfs here (%v): needs root; EROFS is covered by TestDiskFullFallsBackToMemoryAndResumes's fault injection", err)
	}
	defer syscall.Unmount(dir, 0)
	b, err := New(Config{Exporter: &recorder{}, SpoolDir: filepath.Join(dir, "spool")})
	if err == nil {
		b.Shutdown(t.Context())
		t.Fatal("New accepted a spool directory on a read-only filesystem")
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("error %q should name the directory and say read-only", err)
	}
	b, err = New(Config{Exporter: &recorder{}, SpoolDir: dir})
	if err == nil {
		b.Shutdown(t.Context())
		t.Fatal("New accepted a read-only spool directory")
	}
	t.Log(err)
}
