module headrace.dev/bench/loadgen

// The standard library only: `headrace bench` builds this offline (GOPROXY=off, GOTOOLCHAIN=local).
go 1.21
