// The compiled load generator of `headrace bench --via api`: it POSTs workflow starts to the REST
// API (Dapr's `POST /v1.0/workflows/{component}/{name}/start?instanceID=...`) on keep-alive
// connections and reports every request's result, so the client does not eat the machine it
// measures (as Dapr's perf suite drives daprd with k6, https://github.com/dapr/dapr/tree/master/tests/perf).
//
// The harness (ops/bench/httpload.py) follows completions on the status topic and decides what to
// start and when (closed or open loop, as for the Kafka path); it says so one line at a time on stdin:
//
//	ID          start an instance with this ID and the -body file's body
//	ID BODY     start one with this body (a workflow input of its own: one line of JSON)
//	stop        read nothing more; send what was asked for, wait for every answer, exit (so does EOF)
//
// and reads one line per request on stdout:
//
//	ID SENT_NS DONE_NS STATUS [ERROR]
//
// SENT_NS and DONE_NS are CLOCK_MONOTONIC nanoseconds (Python's time.monotonic() clock), STATUS
// the HTTP status (0 when no response came), ERROR the body or transport error of a failure.
// Starts wait for a free connection in the order they were asked for; the stdin loop never
// blocks on them. Linux only (CLOCK_MONOTONIC through clock_gettime(2)); elsewhere the build
// fails and the bench uses its Python client.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// monotonicNs reads CLOCK_MONOTONIC, the clock of Python's time.monotonic(): Go's own monotonic
// reading is relative to the process start and cannot be compared across processes.
func monotonicNs() int64 {
	var ts syscall.Timespec
	const clockMonotonic = 1
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Sec*1_000_000_000 + ts.Nsec
}

type start struct {
	id   string
	body []byte
}

type starter struct {
	client   *http.Client
	urls     []string
	workflow string
	body     []byte
	slots    chan struct{} // bounds requests in flight to the connections
	out      *bufio.Writer
	outMu    sync.Mutex
	written  chan struct{} // a report is waiting in `out`
	wg       sync.WaitGroup

	// Filled by the stdin loop, emptied by `dispatch`.
	mu      sync.Mutex
	wake    *sync.Cond
	queue   []start
	sent    int
	stopped bool
}

func (s *starter) report(line string) {
	s.outMu.Lock()
	s.out.WriteString(line)
	s.outMu.Unlock()
	select {
	case s.written <- struct{}{}:
	default: // the flusher is already due to run
	}
}

// flusher writes reports out in batches, a moment after the first of a batch: a line per request
// would be a write(2) per request, and a ticker would wake the process when nothing happens.
func (s *starter) flusher(done <-chan struct{}) {
	for {
		select {
		case <-s.written:
			time.Sleep(2 * time.Millisecond)
			s.outMu.Lock()
			s.out.Flush()
			s.outMu.Unlock()
		case <-done:
			return
		}
	}
}

func (s *starter) ask(one start) {
	s.mu.Lock()
	s.queue = append(s.queue, one)
	s.mu.Unlock()
	s.wake.Signal()
}

func (s *starter) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wake.Signal()
}

// dispatch takes a free connection, then the next start asked for; returns once stopped and
// everything asked for is sent.
func (s *starter) dispatch() {
	for {
		s.slots <- struct{}{}
		s.mu.Lock()
		for !s.stopped && len(s.queue) == 0 {
			s.wake.Wait()
		}
		if len(s.queue) == 0 {
			s.mu.Unlock()
			<-s.slots
			return
		}
		one := s.queue[0]
		s.queue = s.queue[1:]
		base := s.urls[s.sent%len(s.urls)]
		s.sent++
		s.mu.Unlock()
		s.wg.Add(1)
		go s.post(base, one)
	}
}

func (s *starter) post(base string, one start) {
	defer s.wg.Done()
	defer func() { <-s.slots }()
	target := base + "/v1.0/workflows/dapr/" + s.workflow + "/start?instanceID=" + url.QueryEscape(one.id)
	body := one.body
	if body == nil {
		body = s.body
	}
	sent := monotonicNs()
	resp, err := s.client.Post(target, "application/json", bytes.NewReader(body))
	status, why := 0, ""
	if err != nil {
		why = err.Error()
	} else {
		status = resp.StatusCode
		text, _ := io.ReadAll(resp.Body) // read to the end: the connection is reused
		resp.Body.Close()
		if status != http.StatusAccepted {
			why = string(text)
		}
	}
	done := monotonicNs()
	line := one.id + " " + strconv.FormatInt(sent, 10) + " " + strconv.FormatInt(done, 10) + " " + strconv.Itoa(status)
	if why != "" {
		line += " " + strings.Join(strings.Fields(why), " ")
	}
	s.report(line + "\n")
}

func main() {
	urls := flag.String("urls", "", "API base URLs, comma separated (http://127.0.0.1:3500)")
	workflow := flag.String("workflow", "", "workflow name")
	bodyFile := flag.String("body", "", "file holding the request body (the workflow input); empty: no body")
	connections := flag.Int("connections", 64, "keep-alive connections per API (requests in flight at most)")
	flag.Parse()
	if *urls == "" || *workflow == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -urls and -workflow are required")
		os.Exit(2)
	}
	var body []byte
	if *bodyFile != "" {
		var err error
		if body, err = os.ReadFile(*bodyFile); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
	}
	bases := strings.Split(*urls, ",")
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        *connections * len(bases),
		MaxIdleConnsPerHost: *connections,
		MaxConnsPerHost:     *connections,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	s := &starter{
		client:   &http.Client{Transport: transport, Timeout: 120 * time.Second},
		urls:     bases,
		workflow: url.PathEscape(*workflow),
		body:     body,
		slots:    make(chan struct{}, *connections*len(bases)),
		out:      bufio.NewWriterSize(os.Stdout, 64*1024),
		written:  make(chan struct{}, 1),
	}
	s.wake = sync.NewCond(&s.mu)
	flushDone := make(chan struct{})
	go s.flusher(flushDone)
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		s.dispatch()
	}()

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64*1024), 64*1024*1024) // a line may carry a large workflow input
	for in.Scan() {
		line := in.Text()
		if line == "stop" {
			break
		}
		if line == "" {
			continue
		}
		id, body, withBody := strings.Cut(line, " ")
		one := start{id: id}
		if withBody {
			one.body = []byte(body)
		}
		s.ask(one)
	}
	s.stop()
	<-dispatched
	s.wg.Wait()
	close(flushDone)
	s.out.Flush()
}
