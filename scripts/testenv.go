//go:build ignore

// Command testenv is a tiny helper for scripts/test.sh, so the script needs
// nothing but Go on the machine (no curl, no nc). It is excluded from the
// module's packages by its build tag; test.sh builds it with
// "go build -o .tmp/bin/testenv scripts/testenv.go".
//
// Usage:
//
//	testenv freeport          print a free TCP port on 127.0.0.1
//	testenv health URL        exit 0 when GET URL/health answers 200
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "freeport":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail("freeport: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			fail("freeport: %v", err)
		}
		fmt.Println(port)
	case "health":
		if len(os.Args) != 3 {
			usage()
		}
		if err := health(os.Args[2]); err != nil {
			fail("health: %v", err)
		}
	default:
		usage()
	}
}

func health(base string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(strings.TrimSuffix(base, "/") + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func usage() {
	fail("usage: testenv freeport | testenv health URL")
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "testenv: "+format+"\n", args...)
	os.Exit(1)
}
