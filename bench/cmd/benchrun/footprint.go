package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// footprint is the size of one footprint service, built stripped.
type footprint struct {
	Bytes int64 `json:"bytes"`
	// InitWork lists the packages of the logging library that allocated
	// in their initialisation at start-up (GODEBUG=inittrace=1).
	InitWork []string `json:"init_work"`
	// InitChecked is false when inittrace could not be read.
	InitChecked bool `json:"init_checked"`
}

// footprintServices maps each service in bench/footprint to the package
// prefix whose init work is reported.
var footprintServices = []struct{ name, prefix string }{
	{"slogjson", "log/slog"},
	{"lokislog", "github.com/lokislog/lokislog"},
	{"slogloki", "github.com/"},
	{"otel", "go.opentelemetry.io/"},
}

// moduleDir returns the bench module's directory (where go.mod is).
func moduleDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the bench module: run benchrun from lokislog's bench directory")
	}
	return filepath.Dir(gomod), nil
}

func (p *parent) footprints() {
	dir, err := moduleDir()
	if err != nil {
		p.fail("footprint: %v", err)
		return
	}
	if _, err := os.Stat(filepath.Join(dir, "footprint", "lokislog")); err != nil {
		p.fail("footprint: %v (run benchrun from lokislog's bench directory)", err)
		return
	}
	for _, s := range footprintServices {
		bin := filepath.Join(p.work, "footprint-"+s.name)
		if runtime.GOOS == "windows" {
			bin += ".exe"
		}
		cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, "./footprint/"+s.name)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			p.fail("build footprint/%s: %v\n%s", s.name, err, out)
			continue
		}
		fi, err := os.Stat(bin)
		if err != nil {
			p.fail("footprint/%s: %v", s.name, err)
			continue
		}
		fp := footprint{Bytes: fi.Size()}
		fp.InitWork, fp.InitChecked = initWork(bin, s.prefix)
		p.res.Footprint[s.name] = fp
		logf("footprint %-8s %9d bytes; init work under %s: %v", s.name, fp.Bytes, s.prefix, fp.InitWork)
	}
}

// initWork runs bin -check with GODEBUG=inittrace=1 and returns the
// packages under prefix that did work in init, as "pkg (N bytes, M allocs)".
func initWork(bin, prefix string) ([]string, bool) {
	cmd := exec.Command(bin, "-check")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1", "LOKI_URL=http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, false
	}
	var out []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		// init PKG @0.1 ms, 0.01 ms clock, 1234 bytes, 5 allocs
		f := strings.Fields(line)
		if len(f) < 11 || f[0] != "init" || !strings.HasPrefix(f[1], prefix) || f[7] == "0" && f[9] == "0" {
			continue
		}
		out = append(out, fmt.Sprintf("%s (%s bytes, %s allocs)", f[1], f[7], f[9]))
	}
	return out, true
}
