// Counters, HDR latency histograms, CPU accounting and the open-loop pacer.
//
// Histograms: hdrhistogram-go, 1 ns .. 60 s, 3 significant digits, values in ns, reported in us.
// CPU: utime+stime of watched pids from /proc/<pid>/stat (all threads of the process) and this
// process's getrusage, sampled at regime start and end, in seconds.
package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

var epoch = time.Now()

// nanotime is monotonic ns since the process started.
func nanotime() int64 { return int64(time.Since(epoch)) }

func newHist() *hdr.Histogram { return hdr.New(1, 60_000_000_000, 3) }

// Counters are correctness counts over every request of a regime (measured or not).
type Counters struct {
	Sent       int64            `json:"sent"`
	Answered   int64            `json:"answered"`
	Unanswered int64            `json:"unanswered"`
	Errors     int64            `json:"errors"`
	Places     int64            `json:"places"`
	Cancels    int64            `json:"cancels"`
	CancelAlls int64            `json:"cancel_alls"`
	Canceled   int64            `json:"canceled_by_cancel_all"`
	Pushes     int64            `json:"pushes"` // private events (OrderUpdate, BalanceUpdate) received
	Late       int64            `json:"late"`   // answers that came after their regime gave up on them
	ErrorNames map[string]int64 `json:"error_names"`
	Outcomes   map[string]int64 `json:"outcomes"` // "place:NEW", "cancel:CANCELED", ...
}

func (c *Counters) add(o *Counters) {
	c.Sent += o.Sent
	c.Answered += o.Answered
	c.Unanswered += o.Unanswered
	c.Errors += o.Errors
	c.Places += o.Places
	c.Cancels += o.Cancels
	c.CancelAlls += o.CancelAlls
	c.Canceled += o.Canceled
	c.Pushes += o.Pushes
	c.Late += o.Late
	for k, v := range o.ErrorNames {
		c.bump(&c.ErrorNames, k, v)
	}
	for k, v := range o.Outcomes {
		c.bump(&c.Outcomes, k, v)
	}
}

func (c *Counters) bump(m *map[string]int64, k string, n int64) {
	if *m == nil {
		*m = map[string]int64{}
	}
	(*m)[k] += n
}

// Summary of one histogram, in microseconds.
type Summary struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

func summarize(h *hdr.Histogram) Summary {
	us := func(v int64) float64 { return float64(v) / 1e3 }
	return Summary{Count: h.TotalCount(), P50: us(h.ValueAtQuantile(50)), P90: us(h.ValueAtQuantile(90)),
		P99: us(h.ValueAtQuantile(99)), P999: us(h.ValueAtQuantile(99.9)), Max: us(h.Max()),
		Mean: h.Mean() / 1e3}
}

// RegimeResult is one regime's figures.
type RegimeResult struct {
	Name      string  `json:"name"`
	Transport string  `json:"transport"`
	Mode      string  `json:"mode"`
	Offered   float64 `json:"offered"`
	Conns     int     `json:"connections"`
	Inflight  int     `json:"inflight"`
	Measured  float64 `json:"measured_seconds"`
	Wall      float64 `json:"wall_seconds"` // start to last answer (the CPU figures cover it)
	// open loop: the pacer stopped early because more than max_backlog_s x rate requests were
	// outstanding (the server could not sustain the rate); StoppedAt is seconds after the start
	Overloaded bool               `json:"overloaded"`
	StoppedAt  float64            `json:"stopped_at_seconds"`
	Achieved   float64            `json:"achieved"` // answered measured requests per second
	Counters                      // every request of the regime
	Latency    map[string]Summary `json:"latency_us"`  // all, place, cancel (measured requests)
	SendLag    Summary            `json:"send_lag_us"` // open loop, every request: send - due time
	CPUSeconds CPU                `json:"cpu_seconds"`
	// seconds the threads of each process spent runnable but waiting for a CPU (the run queue):
	// on a shared core this is the contention a CPU share alone does not show
	RunQueueSeconds CPU `json:"runq_wait_seconds"`
}

// CPU is seconds of CPU by process name ("loadgen" is this process).
type CPU map[string]float64

func (a CPU) minus(b CPU) CPU {
	out := CPU{}
	for k, v := range a {
		out[k] = v - b[k]
	}
	return out
}

func sampleCPU(pids map[string]int) CPU {
	out := CPU{}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		out["loadgen"] = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	for name, pid := range pids {
		if s, ok := procCPU(pid); ok {
			out[name] = s
		}
	}
	return out
}

// sampleRunQueue sums the run-queue wait (field 2 of /proc/<pid>/task/<tid>/schedstat, ns) over
// every thread of each watched process and of this one ("loadgen").
func sampleRunQueue(pids map[string]int) CPU {
	out := CPU{}
	if s, ok := procRunQueue(os.Getpid()); ok {
		out["loadgen"] = s
	}
	for name, pid := range pids {
		if s, ok := procRunQueue(pid); ok {
			out[name] = s
		}
	}
	return out
}

func procRunQueue(pid int) (float64, bool) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			ns += v
		}
	}
	return float64(ns) / 1e9, true
}

// procCPU reads utime+stime (fields 14, 15) of /proc/<pid>/stat; USER_HZ is 100 on Linux.
func procCPU(pid int) (float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, false
	}
	u, e1 := strconv.ParseInt(f[11], 10, 64)
	st, e2 := strconv.ParseInt(f[12], 10, 64)
	if e1 != nil || e2 != nil {
		return 0, false
	}
	return float64(u+st) / 100, true
}

// pace calls send(i, due) for every i with due = t0 + i/rate < tEnd, at (or after) its due time,
// on a locked OS thread that sleeps with nanosleep and a 1 us timer slack.
// send returns false to stop early (overload); pace returns the due time it stopped at (or tEnd).
func pace(rate float64, t0, tEnd int64, send func(i int64, due int64) bool) int64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const prSetTimerslack = 29
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, 1000, 0) //nolint:errcheck // best effort
	step := 1e9 / rate
	for i := int64(0); ; i++ {
		due := t0 + int64(float64(i)*step)
		if due >= tEnd {
			return tEnd
		}
		if wait := due - nanotime(); wait > 0 {
			sleepNs(wait)
		}
		if !send(i, due) {
			return due
		}
	}
}

func sleepNs(ns int64) {
	ts := syscall.NsecToTimespec(ns)
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}

// SPOTX_LOADGEN_TRACE=<file> (development): one line per answered request,
// "regime due_ns latency_ns kind", appended at the end of each regime.
var tracePath = os.Getenv("SPOTX_LOADGEN_TRACE")
var traceOn = tracePath != ""

func writeTrace(regime string, rows [][3]int64) {
	if !traceOn || len(rows) == 0 {
		return
	}
	f, err := os.OpenFile(tracePath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	b := make([]byte, 0, 64*len(rows))
	for _, r := range rows {
		b = append(b, regime...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, r[0], 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, r[1], 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, r[2], 10)
		b = append(b, '\n')
	}
	f.Write(b) //nolint:errcheck // development aid
}
