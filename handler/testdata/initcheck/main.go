// Command initcheck links package handler (and so everything lokislog's
// handler needs) and does nothing: TestNoInitWork runs it with
// GODEBUG=inittrace=1 to see what package initialisation costs.
package main

import "github.com/lokislog/lokislog/handler"

var _ = handler.New

func main() {}
