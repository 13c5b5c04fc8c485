// Command initcheck links package handler (and so everything lokislog's
// handler needs) and the packages a program imports to opt in to client
// certificates and gzip, and does nothing: TestNoInitWork runs it with
// GODEBUG=inittrace=1 to see what package initialisation costs.
package main

import (
	"github.com/lokislog/lokislog/handler"

	_ "github.com/lokislog/lokislog/exporter/clientcert"
	_ "github.com/lokislog/lokislog/exporter/jsongzip"
)

var _ = handler.New

func main() {}
