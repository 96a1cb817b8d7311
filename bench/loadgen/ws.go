// WebSocket order-entry connections: logon, the request stream, open / closed regimes.
//
// Every connection belongs to one reactor (wsio.go), driven by the regime's goroutine on a locked
// OS thread: no locks. Responses are parsed by scanning the bytes the edge writes (orjson, no
// spaces): `{"id":N,"status":S,...`; anything else (OrderUpdate / BalanceUpdate pushes) is only
// counted.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"syscall"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

const (
	kPlace uint8 = iota + 1
	kCancel
	kCancelAll
)

type pending struct {
	due  int64 // open loop: due time; closed loop: send time
	kind uint8
	rec  bool // open loop: due inside the measured window
}

type connStats struct {
	Counters
	// hist[measured][kind]: kind 0 place, 1 cancel; measured 0 = due inside the warm-up (open
	// loop) or answered outside the window (closed loop)
	hist     [2][2]*hdr.Histogram
	measured int64
	lastRecv int64 // last answer to a measured request
	lastAny  int64 // last answer to any request
	trace    [][3]int64
}

func newConnStats() *connStats {
	st := &connStats{}
	for i := range st.hist {
		for j := range st.hist[i] {
			st.hist[i][j] = newHist()
		}
	}
	return st
}

// record accounts one answered place / cancel (cancelAll has no latency).
func (st *connStats) record(kind uint8, lat, now int64, measured bool) {
	st.lastAny = max(st.lastAny, now)
	if kind != kPlace && kind != kCancel {
		return
	}
	m, k := 0, 0
	if measured {
		m = 1
		st.measured++
		st.lastRecv = max(st.lastRecv, now)
	}
	if kind == kCancel {
		k = 1
	}
	st.hist[m][k].RecordValue(lat) //nolint:errcheck // above 60 s saturates
}

type wsConn struct {
	idx  int
	rc   *rawConn
	rx   *reactor // set by newReactor
	buf  []byte   // request payload scratch
	pend map[int64]pending
	id   int64
	gen  opGen
	st   *connStats
	// regime
	closedLoop     bool
	tMeasure, tEnd int64
	readErr        error
}

func sign(secret string, payload []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(payload)
	return hex.EncodeToString(m.Sum(nil))
}

// dialWS connects and logs on (blocking, before the reactor takes the socket over).
func dialWS(spec Spec, idx int, a Account) (*wsConn, error) {
	c, err := dialRaw(spec.WsURL, 10*time.Second)
	if err != nil {
		return nil, err
	}
	ts := time.Now().UnixMilli()
	logon, _ := json.Marshal(map[string]any{"id": "logon", "method": "session.logon", "params": map[string]any{
		"apiKey": a.Key, "timestamp": ts, "signature": sign(a.Secret, []byte(fmt.Sprintf("%dsession.logon", ts)))}})
	c.queue(opText, logon)
	if err := c.writeAll(c.wbuf); err != nil {
		c.close()
		return nil, fmt.Errorf("logon: %w", err)
	}
	c.wbuf = c.wbuf[:0]
	for {
		off := 0
		for {
			msg, ok := c.next(&off)
			if !ok {
				break
			}
			if bytes.HasPrefix(msg, []byte(`{"id":"logon"`)) {
				if !bytes.Contains(msg, []byte(`"status":200`)) {
					c.close()
					return nil, fmt.Errorf("logon refused: %s", msg)
				}
				c.rbuf = append(c.rbuf[:0], c.rbuf[off:]...)
				w := &wsConn{idx: idx, rc: c, pend: map[int64]pending{}, st: newConnStats(),
					gen: opGen{conn: idx, symbol: spec.Symbol, open: int64(spec.OpenOrders)}}
				return w, nil
			}
		}
		c.rbuf = append(c.rbuf[:0], c.rbuf[off:]...)
		if c.err == nil {
			if err := c.readOnce(); err != nil {
				c.fail(err)
			}
		}
		if c.err != nil {
			c.close()
			return nil, fmt.Errorf("logon: %w", c.err)
		}
	}
}

// dead records the first transport error of the connection.
func (w *wsConn) dead(err error) {
	if w.readErr == nil {
		w.readErr = err
	}
}

// send builds the connection's next request, registers it and queues it for the reactor's next
// flush; returns the time it was queued.
func (w *wsConn) send(due int64, rec bool) int64 {
	if w.readErr != nil {
		w.st.Errors++
		w.st.bump(&w.st.ErrorNames, "connection_lost", 1)
		return nanotime()
	}
	w.id++
	var kind uint8
	w.buf, kind = w.gen.next(w.buf[:0], w.id)
	now := nanotime()
	if w.closedLoop {
		due = now
	}
	w.pend[w.id] = pending{due: due, kind: kind, rec: rec}
	w.st.Sent++
	if kind == kPlace {
		w.st.Places++
	} else {
		w.st.Cancels++
	}
	w.rc.queue(opText, w.buf)
	w.rx.mark(w)
	return now
}

var idPrefix = []byte(`{"id":`)

// onMessage accounts one message; true when the closed loop wants the next request sent.
func (w *wsConn) onMessage(data []byte, now int64) bool {
	st := w.st
	if !bytes.HasPrefix(data, idPrefix) {
		st.Pushes++
		return false
	}
	id, rest := parseInt(data[len(idPrefix):])
	p, ok := w.pend[id]
	if !ok {
		st.Late++
		return false
	}
	delete(w.pend, id)
	st.Answered++
	status := int64(0)
	if bytes.HasPrefix(rest, []byte(`,"status":`)) {
		status, _ = parseInt(rest[len(`,"status":`):])
	}
	if status != 200 {
		st.Errors++
		st.bump(&st.ErrorNames, fieldString(data, `"error":"`), 1)
	} else {
		countOutcome(&st.Counters, p.kind, data)
	}
	rec := p.rec
	if w.closedLoop {
		rec = now >= w.tMeasure && now < w.tEnd
	}
	lat := max(now-p.due, 1)
	if traceOn {
		st.trace = append(st.trace, [3]int64{p.due, lat, int64(p.kind)})
	}
	st.record(p.kind, lat, now, rec)
	return w.closedLoop && now < w.tEnd && w.readErr == nil
}

func countOutcome(c *Counters, kind uint8, data []byte) {
	res := bytes.Index(data, []byte(`"result":`))
	if res < 0 {
		c.bump(&c.Outcomes, "no_result", 1)
		return
	}
	switch kind {
	case kPlace:
		c.bump(&c.Outcomes, "place:"+fieldString(data[res:], `"status":"`), 1)
	case kCancel:
		c.bump(&c.Outcomes, "cancel:"+fieldString(data[res:], `"status":"`), 1)
	case kCancelAll:
		c.Canceled += int64(bytes.Count(data[res:], []byte(`"status":"CANCELED"`)))
	}
}

func fieldString(data []byte, key string) string {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return "unparsed"
	}
	s := data[i+len(key):]
	j := bytes.IndexByte(s, '"')
	if j < 0 || j > 64 {
		return "unparsed"
	}
	return string(s[:j])
}

func parseInt(b []byte) (int64, []byte) {
	i, neg, v := 0, false, int64(0)
	if len(b) > 0 && b[0] == '-' {
		neg, i = true, 1
	}
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + int64(b[i]-'0')
	}
	if neg {
		v = -v
	}
	return v, b[i:]
}

// begin starts a regime on this connection with fresh stats.
func (w *wsConn) begin(closedLoop bool, tMeasure, tEnd int64) {
	w.st, w.closedLoop, w.tMeasure, w.tEnd = newConnStats(), closedLoop, tMeasure, tEnd
}

// take ends the regime on this connection: what is still outstanding counts as unanswered.
func (w *wsConn) take() *connStats {
	st := w.st
	st.Unanswered += int64(len(w.pend))
	clear(w.pend)
	w.st, w.closedLoop = newConnStats(), false
	return st
}

// drain polls until no live connection has an outstanding request, or until deadline.
func (r *reactor) drain(deadline int64) {
	for {
		waiting := false
		for _, w := range r.conns {
			if len(w.pend) > 0 && w.readErr == nil {
				waiting = true
				break
			}
		}
		now := nanotime()
		if !waiting || now >= deadline {
			return
		}
		r.poll(min(deadline-now, int64(5*time.Millisecond)))
	}
}

// cancelAll sends orders.cancelAll on every connection and waits for the answers (the closing
// cleanup of the run).
func (r *reactor) cancelAll(into *Counters, drain time.Duration) {
	defer r.lock()()
	for _, w := range r.conns {
		w.begin(false, 0, 0)
		if w.readErr != nil {
			into.Errors++
			into.bump(&into.ErrorNames, "connection_lost", 1)
			continue
		}
		w.pend[-1] = pending{kind: kCancelAll}
		w.st.Sent++
		w.st.CancelAlls++
		w.rc.queue(opText, fmt.Appendf(nil, `{"id":-1,"method":"orders.cancelAll","params":{"symbol":%q}}`, w.gen.symbol))
		r.mark(w)
	}
	r.flush()
	r.drain(nanotime() + int64(drain))
	for _, w := range r.conns {
		st := w.take()
		into.add(&st.Counters)
	}
}

// close sends a close frame on every connection, waits up to 2 s for the server to close them,
// then closes every socket.
func (r *reactor) close() {
	defer r.lock()()
	for _, w := range r.conns {
		if w.readErr == nil {
			w.rc.queue(opClose, []byte{0x03, 0xE8}) // 1000: normal closure
			r.mark(w)
		}
	}
	r.flush()
	deadline := nanotime() + int64(2*time.Second)
	for nanotime() < deadline {
		open := 0
		for _, w := range r.conns {
			if w.readErr == nil {
				open++
			}
		}
		if open == 0 {
			break
		}
		r.poll(int64(5 * time.Millisecond))
	}
	for _, w := range r.conns {
		w.rc.close()
	}
	syscall.Close(r.epfd) //nolint:errcheck
}

// mergeConns sums the connections' regime stats. Latency "place" / "cancel" / "all" cover the
// measured requests, or every request when the regime was overloaded (its warm-up is part of the
// overload); "warmup" is the requests left out otherwise.
func mergeConns(r Regime, parts []*connStats, conns int, overloaded bool) *RegimeResult {
	res := &RegimeResult{Name: r.Name, Transport: r.Transport, Mode: r.Mode, Offered: r.Rate,
		Conns: conns, Inflight: r.Inflight, Measured: r.Seconds - r.Warmup, Overloaded: overloaded}
	var h [2][2]*hdr.Histogram
	for i := range h {
		for j := range h[i] {
			h[i][j] = newHist()
		}
	}
	for _, p := range parts {
		writeTrace(r.Name, p.trace)
		res.Counters.add(&p.Counters)
		for i := range h {
			for j := range h[i] {
				h[i][j].Merge(p.hist[i][j])
			}
		}
	}
	if overloaded {
		h[1][0].Merge(h[0][0])
		h[1][1].Merge(h[0][1])
	}
	all, warm := newHist(), newHist()
	all.Merge(h[1][0])
	all.Merge(h[1][1])
	warm.Merge(h[0][0])
	warm.Merge(h[0][1])
	res.Latency = map[string]Summary{"all": summarize(all), "place": summarize(h[1][0]),
		"cancel": summarize(h[1][1]), "warmup": summarize(warm)}
	return res
}

// achieved is answered requests per second: over the measured window, or, for an overloaded
// regime, every answer over start .. last answer (the server was saturated throughout).
func achieved(res *RegimeResult, t0, tMeasure, stop, last, lastAny int64) float64 {
	switch {
	case res.Overloaded && lastAny > t0:
		return float64(res.Answered) / (float64(lastAny-t0) / 1e9)
	case res.Latency["all"].Count > 0:
		return float64(res.Latency["all"].Count) / (float64(max(last, stop)-tMeasure) / 1e9)
	}
	return 0
}

// runOpen: request i is due at t0 + i/rate and goes to connection i mod N. The reactor queues
// every request that is due, writes them (one write per connection per iteration), then sleeps in
// epoll until the next due time or an answer.
func runOpen(rx *reactor, r Regime, drain time.Duration, maxBacklogS float64) *RegimeResult {
	defer rx.lock()()
	conns := rx.conns
	t0 := nanotime() + int64(10*time.Millisecond)
	tMeasure, tEnd := t0+int64(r.Warmup*1e9), t0+int64(r.Seconds*1e9)
	for _, c := range conns {
		c.begin(false, tMeasure, tEnd)
	}
	lag := newHist()
	n := int64(len(conns))
	limit := max(int64(r.Rate*maxBacklogS), 256)
	step := 1e9 / r.Rate
	stop := tEnd
	i := int64(0)
	due := t0
	lastSend := int64(0) // start of the last iteration that sent
run:
	for due < tEnd {
		now := nanotime()
		if due <= now {
			lastSend = now
		}
		for due <= now {
			sent := conns[i%n].send(due, due >= tMeasure)
			lag.RecordValue(max(sent-due, 1)) //nolint:errcheck
			if i%256 == 255 && outstanding(conns) > limit {
				stop = due
				rx.flush()
				break run
			}
			i++
			due = t0 + int64(float64(i)*step)
			if due >= tEnd {
				break
			}
		}
		rx.flush()
		if due >= tEnd {
			break
		}
		// never wake to send sooner than wakeQuantum after the last sending iteration: above
		// 1/wakeQuantum requests/s each wake sends several (late by < wakeQuantum, counted in the
		// latency); below it, or after a wake-up by an answer, the send is on time
		wake := max(due, lastSend+wakeQuantum)
		rx.poll(wake - nanotime())
	}
	rx.drain(nanotime() + int64(drain))
	parts, last, lastAny := collect(conns)
	res := mergeConns(r, parts, len(conns), stop < tEnd)
	res.SendLag = summarize(lag)
	if res.Overloaded {
		res.StoppedAt = float64(stop-t0) / 1e9
		res.Measured = float64(stop-t0) / 1e9
	}
	res.Achieved = achieved(res, t0, tMeasure, stop, last, lastAny)
	return res
}

// wakeQuantum is the shortest sleep between two open-loop send wake-ups. Each timed wake-up costs
// an hrtimer interrupt, which in this KVM guest was the largest single cost of the generator at
// 50 k/s (epoll_pwait2's hrtimer path ~16 % of its samples, perf).
const wakeQuantum = int64(50 * time.Microsecond)

func outstanding(conns []*wsConn) int64 {
	var n int64
	for _, c := range conns {
		n += int64(len(c.pend))
	}
	return n
}

// runClosed: every connection keeps `inflight` requests outstanding; each answer queues the next
// request (written at the end of the reactor iteration that read it).
func runClosed(rx *reactor, r Regime, drain time.Duration) *RegimeResult {
	defer rx.lock()()
	conns := rx.conns
	t0 := nanotime()
	tMeasure, tEnd := t0+int64(r.Warmup*1e9), t0+int64(r.Seconds*1e9)
	for _, c := range conns {
		c.begin(true, tMeasure, tEnd)
	}
	for k := 0; k < r.Inflight; k++ {
		for _, c := range conns {
			c.send(0, false)
		}
	}
	rx.flush()
	for now := nanotime(); now < tEnd; now = nanotime() {
		rx.poll(tEnd - now)
	}
	rx.drain(nanotime() + int64(drain))
	parts, _, _ := collect(conns)
	res := mergeConns(r, parts, len(conns), false)
	res.Achieved = float64(res.Latency["all"].Count) / (float64(tEnd-tMeasure) / 1e9)
	return res
}

// collect ends the regime on every connection: (stats, last measured answer, last answer).
func collect(conns []*wsConn) ([]*connStats, int64, int64) {
	parts := make([]*connStats, 0, len(conns))
	var last, lastAny int64
	for _, c := range conns {
		st := c.take()
		parts = append(parts, st)
		last, lastAny = max(last, st.lastRecv), max(lastAny, st.lastAny)
	}
	return parts, last, lastAny
}

// opGen is a connection's (or REST worker's) order stream: place while fewer than `open` of its
// orders are outstanding, else cancel the oldest by clientOrderId. Client order ids are
// g<conn>x<n>; placed - canceled <= open at every point of the stream.
type opGen struct {
	conn             int
	symbol           string
	open             int64
	placed, canceled int64
}

func (g *opGen) cid(b []byte, n int64) []byte {
	b = append(b, 'g')
	b = strconv.AppendInt(b, int64(g.conn), 10)
	b = append(b, 'x')
	return strconv.AppendInt(b, n, 10)
}

// price is BUY 29000.00 .. 29009.99 on even orders, SELL 31000.00 .. 31009.99 on odd ones.
func (g *opGen) price(b []byte, n int64) ([]byte, string) {
	side, base := "BUY", int64(29000)
	if n%2 == 1 {
		side, base = "SELL", 31000
	}
	cents := n % 1000
	b = strconv.AppendInt(b, base+cents/100, 10)
	b = append(b, '.')
	b = append(b, byte('0'+cents%100/10), byte('0'+cents%10))
	return b, side
}

// next appends the next WS request (id) to b.
func (g *opGen) next(b []byte, id int64) ([]byte, uint8) {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, id, 10)
	if g.placed-g.canceled >= g.open {
		b = append(b, `,"method":"order.cancel","params":{"symbol":"`...)
		b = append(b, g.symbol...)
		b = append(b, `","clientOrderId":"`...)
		b = g.cid(b, g.canceled)
		g.canceled++
		return append(b, `"}}`...), kCancel
	}
	b = append(b, `,"method":"order.place","params":`...)
	b = g.placeBody(b)
	return append(b, '}'), kPlace
}

// placeBody appends the JSON params of the next order.place (advances the stream).
func (g *opGen) placeBody(b []byte) []byte {
	n := g.placed
	g.placed++
	b = append(b, `{"symbol":"`...)
	b = append(b, g.symbol...)
	b = append(b, `","side":"`...)
	var px []byte
	var side string
	px, side = g.price(nil, n)
	b = append(b, side...)
	b = append(b, `","type":"LIMIT","timeInForce":"GTC","postOnly":true,"price":"`...)
	b = append(b, px...)
	b = append(b, `","quantity":"0.0001","clientOrderId":"`...)
	b = g.cid(b, n)
	return append(b, `"}`...)
}
