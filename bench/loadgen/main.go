// spotx-loadgen: the order-entry load generator of `python -m bench e2e` (bench/e2e.py).
//
// Why Go: a Python client process would be the bottleneck long before the edge; this binary
// paces, sends and parses tens of thousands of WebSocket requests per second on a fraction of a
// core. bench/e2e.py builds it into var/loadgen/ on first use (never committed).
//
// `spotx-loadgen sink ADDR` instead serves a stand-in edge for the generator's self-test (sink.go).
//
// Input: one JSON spec (Spec below) on stdin. Output: one JSON report (Report) on stdout; progress
// and errors on stderr. SPOTX_LOADGEN_CPUPROFILE=<file> writes a pprof CPU profile (development). Exit code 0 when the run completed (correctness is judged by the caller
// from the counters), 2 on bad input, 1 when a connection or logon failed.
//
// Workload (every connection is one market-maker account, logged on with session.logon):
//   - op j of a connection is order.place (post-only LIMIT GTC, BUY below / SELL above the mid,
//     alternating, never crossing) while fewer than open_orders of its orders are outstanding, then
//     alternately order.cancel (by clientOrderId, of its oldest outstanding order) and order.place.
//     The edge sequences a connection's writes in arrival order, so the cancel always follows its
//     order in the engine and the book holds at most open_orders orders per connection.
//   - open loop ("open"): request i of the whole generator is due at t0 + i/rate and goes to
//     connection i mod N. One thread owns every WS connection (wsio.go): it queues each request
//     when due, writes, and sleeps in epoll_pwait2 until the next due time or an answer (timer
//     slack 1 us; Go's own timers have ~1 ms granularity on this kernel). Latency is measured
//     from the due time to the response (coordinated-omission aware: a late send, a stalled
//     server or a full socket all count).
//   - closed loop ("closed"): each connection keeps `inflight` requests outstanding; each answer
//     queues a new request. Latency from send to response. This finds max orders/s.
//   - REST ("rest", open loop): one worker goroutine per REST account, each with its own keep-alive
//     connection; a pacer thread (stats.go pace: nanosleep, 1 us slack) hands due times to worker
//     i mod W.
//
// A regime's first `warmup` seconds are sent but not recorded. After `seconds`, the generator waits
// up to drain_seconds for every outstanding answer; what is still missing is reported unanswered.
// Limits: ids are per-connection int64; a connection's outstanding requests live in a map (bounded
// by rate x (seconds + drain_seconds)).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"time"
)

// Account is one API key (trade role) of one account.
type Account struct {
	Key    string `json:"key"`
	Secret string `json:"secret"`
}

// Regime is one measured load level.
type Regime struct {
	Name      string  `json:"name"`
	Transport string  `json:"transport"` // ws | rest
	Mode      string  `json:"mode"`      // open | closed (closed: ws only)
	Rate      float64 `json:"rate"`      // offered requests/s over the whole generator (open)
	Seconds   float64 `json:"seconds"`
	Warmup    float64 `json:"warmup"`
	Inflight  int     `json:"inflight"` // closed loop: outstanding requests per connection
}

// Spec is the whole run.
type Spec struct {
	WsURL        string         `json:"ws_url"`
	RestURL      string         `json:"rest_url"`
	Symbol       string         `json:"symbol"`
	WsAccounts   []Account      `json:"ws_accounts"`
	RestAccounts []Account      `json:"rest_accounts"`
	OpenOrders   int            `json:"open_orders"`
	DrainSeconds float64        `json:"drain_seconds"`
	MaxBacklogS  float64        `json:"max_backlog_s"` // open loop: stop when outstanding > this x rate
	WatchPids    map[string]int `json:"watch_pids"`
	Regimes      []Regime       `json:"regimes"`
}

// Report is what the generator prints.
type Report struct {
	Go         string          `json:"go"`
	GoMaxProcs int             `json:"gomaxprocs"`
	Regimes    []*RegimeResult `json:"regimes"`
	Cleanup    Counters        `json:"cleanup"`
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "spotx-loadgen: "+format+"\n", args...)
	os.Exit(code)
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "sink" {
		sink(os.Args[2])
		return
	}
	var spec Spec
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		fail(2, "bad spec on stdin: %v", err)
	}
	if err := spec.check(); err != nil {
		fail(2, "bad spec: %v", err)
	}
	debug.SetGCPercent(400)
	if runtime.GOMAXPROCS(0) < 2 {
		// pinned to one core: the REST pacer's locked thread still needs a P of its own, else every
		// wake-up waits for a P hand-off from the readers (measured: p50 at 50k/s 10 ms vs 0.3 ms)
		runtime.GOMAXPROCS(2)
	}
	if path := os.Getenv("SPOTX_LOADGEN_CPUPROFILE"); path != "" { // development: where the CPU goes
		f, err := os.Create(path)
		if err != nil {
			fail(2, "cpu profile: %v", err)
		}
		pprof.StartCPUProfile(f) //nolint:errcheck // best effort
		defer pprof.StopCPUProfile()
	}
	rep := Report{Go: runtime.Version(), GoMaxProcs: runtime.GOMAXPROCS(0)}
	var conns []*wsConn
	if len(spec.WsAccounts) > 0 {
		for i, a := range spec.WsAccounts {
			c, err := dialWS(spec, i, a)
			if err != nil {
				fail(1, "ws connection %d: %v", i, err)
			}
			conns = append(conns, c)
		}
	}
	var rest []*restWorker
	for i, a := range spec.RestAccounts {
		rest = append(rest, newRestWorker(spec, i, a))
	}
	var rx *reactor
	if len(conns) > 0 {
		var err error
		if rx, err = newReactor(conns); err != nil {
			fail(1, "ws reactor: %v", err)
		}
		for _, c := range conns {
			c.rx = rx
		}
	}
	drain := time.Duration(spec.DrainSeconds * 1e9)
	for _, r := range spec.Regimes {
		var res *RegimeResult
		cpu0, rq0, w0 := sampleCPU(spec.WatchPids), sampleRunQueue(spec.WatchPids), nanotime()
		switch {
		case r.Transport == "rest":
			res = runRest(rest, r, spec.MaxBacklogS)
		case r.Mode == "closed":
			res = runClosed(rx, r, drain)
		default:
			res = runOpen(rx, r, drain, spec.MaxBacklogS)
		}
		res.CPUSeconds = sampleCPU(spec.WatchPids).minus(cpu0)
		res.RunQueueSeconds = sampleRunQueue(spec.WatchPids).minus(rq0)
		res.Wall = float64(nanotime()-w0) / 1e9
		rep.Regimes = append(rep.Regimes, res)
		fmt.Fprintf(os.Stderr, "spotx-loadgen: %s: %.0f/s achieved, %d sent, %d answered, %d errors\n",
			res.Name, res.Achieved, res.Sent, res.Answered, res.Errors)
	}
	if rx != nil {
		rx.cancelAll(&rep.Cleanup, drain)
		rx.close()
	}
	out, _ := json.Marshal(rep)
	os.Stdout.Write(append(out, '\n'))
}

func (s *Spec) check() error {
	if s.Symbol == "" || s.OpenOrders < 1 || s.OpenOrders > 4096 {
		return fmt.Errorf("symbol and open_orders (1..4096) are required")
	}
	if s.DrainSeconds <= 0 || s.DrainSeconds > 120 {
		return fmt.Errorf("drain_seconds must be in (0, 120]")
	}
	if s.MaxBacklogS <= 0 || s.MaxBacklogS > 60 {
		return fmt.Errorf("max_backlog_s must be in (0, 60]")
	}
	for _, r := range s.Regimes {
		switch {
		case r.Seconds <= 0 || r.Seconds > 600 || r.Warmup < 0 || r.Warmup >= r.Seconds:
			return fmt.Errorf("regime %q: need 0 <= warmup < seconds <= 600", r.Name)
		case r.Transport == "ws" && len(s.WsAccounts) == 0, r.Transport == "rest" && len(s.RestAccounts) == 0:
			return fmt.Errorf("regime %q: no %s accounts", r.Name, r.Transport)
		case r.Transport != "ws" && r.Transport != "rest":
			return fmt.Errorf("regime %q: transport must be ws or rest", r.Name)
		case r.Mode == "open" && (r.Rate <= 0 || r.Rate > 2e6):
			return fmt.Errorf("regime %q: open loop needs 0 < rate <= 2e6", r.Name)
		case r.Mode == "closed" && (r.Transport != "ws" || r.Inflight < 1 || r.Inflight > 4096):
			return fmt.Errorf("regime %q: closed loop is ws only, 1 <= inflight <= 4096", r.Name)
		case r.Mode != "open" && r.Mode != "closed":
			return fmt.Errorf("regime %q: mode must be open or closed", r.Name)
		}
	}
	return nil
}
