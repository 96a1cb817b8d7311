// REST order entry (the comparison path): signed POST /v1/orders and
// DELETE /v1/orders?symbol=&clientOrderId=, one keep-alive connection per worker (= account).
//
// Open loop only: the pacer hands request i's due time to worker i mod W over a buffered channel;
// a worker that is still busy with an earlier request sends late, and that lateness counts in the
// latency (measured from the due time). Signature: hex HMAC-SHA256 over
// timestamp + METHOD + path_with_query + body (API.md "Authentication").
package main

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

type restWorker struct {
	base   string
	acct   Account
	client *http.Client
	gen    opGen
	body   []byte
}

func newRestWorker(spec Spec, idx int, a Account) *restWorker {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
	return &restWorker{base: spec.RestURL, acct: a,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		// REST workers count from 1000 so their client order ids never meet a WS connection's
		gen: opGen{conn: 1000 + idx, symbol: spec.Symbol, open: int64(spec.OpenOrders)}}
}

// do sends the worker's next request; returns (kind, HTTP status, body).
func (w *restWorker) do() (uint8, int, []byte, error) {
	var method, target string
	var kind uint8
	w.body = w.body[:0]
	if w.gen.placed-w.gen.canceled >= w.gen.open {
		kind, method = kCancel, http.MethodDelete
		target = string(w.gen.cid([]byte("/v1/orders?symbol="+w.gen.symbol+"&clientOrderId="), w.gen.canceled))
		w.gen.canceled++
	} else {
		kind, method, target = kPlace, http.MethodPost, "/v1/orders"
		w.body = w.gen.placeBody(w.body)
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	payload := append([]byte(ts+method+target), w.body...)
	var rd io.Reader
	if len(w.body) > 0 {
		rd = bytes.NewReader(w.body)
	}
	req, err := http.NewRequest(method, w.base+target, rd)
	if err != nil {
		return kind, 0, nil, err
	}
	req.Header.Set("X-API-KEY", w.acct.Key)
	req.Header.Set("X-TIMESTAMP", ts)
	req.Header.Set("X-SIGNATURE", sign(w.acct.Secret, payload))
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return kind, 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return kind, resp.StatusCode, out, err
}

func (w *restWorker) loop(dues <-chan int64, st *connStats, tMeasure int64) {
	for due := range dues {
		kind, code, body, err := w.do()
		now := nanotime()
		st.Sent++
		if kind == kPlace {
			st.Places++
		} else {
			st.Cancels++
		}
		if err != nil {
			st.Errors++
			st.Unanswered++
			st.bump(&st.ErrorNames, "transport", 1)
			continue
		}
		st.Answered++
		if code != http.StatusOK {
			st.Errors++
			st.bump(&st.ErrorNames, fieldString(body, `"error":"`), 1)
		} else {
			tag := "place:"
			if kind == kCancel {
				tag = "cancel:"
			}
			st.bump(&st.Outcomes, tag+fieldString(body, `"status":"`), 1)
		}
		st.record(kind, max(now-due, 1), now, due >= tMeasure)
	}
}

func runRest(workers []*restWorker, r Regime, maxBacklogS float64) *RegimeResult {
	t0 := nanotime() + int64(10*time.Millisecond)
	tMeasure, tEnd := t0+int64(r.Warmup*1e9), t0+int64(r.Seconds*1e9)
	parts := make([]*connStats, len(workers))
	chans := make([]chan int64, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		parts[i], chans[i] = newConnStats(), make(chan int64, 1<<16)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(chans[i], parts[i], tMeasure)
		}()
	}
	lag := newHist()
	n := int64(len(workers))
	limit := max(int(r.Rate*maxBacklogS), 64)
	stop := pace(r.Rate, t0, tEnd, func(i, due int64) bool {
		ch := chans[i%n]
		ch <- due
		lag.RecordValue(max(nanotime()-due, 1)) //nolint:errcheck
		return len(ch)*int(n) <= limit
	})
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait()
	var last, lastAny int64
	for _, p := range parts {
		last, lastAny = max(last, p.lastRecv), max(lastAny, p.lastAny)
	}
	res := mergeConns(r, parts, len(workers), stop < tEnd)
	res.SendLag = summarize(lag) // REST: time to hand the due time to its worker, not the send
	if res.Overloaded {
		res.StoppedAt = float64(stop-t0) / 1e9
		res.Measured = float64(stop-t0) / 1e9
	}
	res.Achieved = achieved(res, t0, tMeasure, stop, last, lastAny)
	return res
}
