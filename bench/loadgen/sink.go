// `spotx-loadgen sink ADDR`: a stand-in WebSocket order-entry server for the generator's self-test.
//
// It answers session.logon, order.place (NEW), order.cancel (CANCELED) and orders.cancelAll (an
// empty list) in request order, and pushes two private events per order request, like the edge's
// OrderUpdate + BalanceUpdate, so the generator reads as many messages as against the real edge.
// No matching, no state: it only shows how fast the generator itself can go on the cores it is
// given (the bench pins the sink to the edge's core). The answer and its two pushes go out in one
// write, as the edge writes each loop iteration's output at once. Listens until SIGTERM / SIGINT or stdin EOF.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/gorilla/websocket"
)

var (
	pushOrder   = []byte(`{"type":"OrderUpdate","symbol":"BTC-USDT","status":"NEW"}`)
	pushBalance = []byte(`{"type":"BalanceUpdate","asset":"USDT","available":"1","locked":"0"}`)
)

func sink(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail(1, "sink: %v", err)
	}
	up := websocket.Upgrader{ReadBufferSize: 1 << 16, WriteBufferSize: 1 << 16}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := sinkAnswer(c, msg); err != nil {
				return
			}
			runtime.Gosched() // round-robin the connections: on one core a goroutine with
			// buffered requests otherwise keeps the only P for its whole 10 ms time slice
		}
	})}
	fmt.Fprintf(os.Stdout, "listening %s\n", ln.Addr())
	go srv.Serve(ln) //nolint:errcheck // ends with the process
	done := make(chan os.Signal, 1)
	signal.Notify(done, syscall.SIGTERM, syscall.SIGINT)
	go func() { io.Copy(io.Discard, os.Stdin); done <- syscall.SIGTERM }() //nolint:errcheck
	<-done
	srv.Close()
}

func sinkAnswer(c *websocket.Conn, msg []byte) error {
	if bytes.Contains(msg, []byte(`"session.logon"`)) {
		return c.WriteMessage(websocket.TextMessage, []byte(`{"id":"logon","status":200,"result":{}}`))
	}
	if !bytes.HasPrefix(msg, idPrefix) {
		return c.WriteMessage(websocket.TextMessage, []byte(`{"id":null,"status":400,"error":{"error":"BAD_REQUEST"}}`))
	}
	id, _ := parseInt(msg[len(idPrefix):])
	out := fmt.Appendf(nil, `{"id":%d,"status":200,"result":`, id)
	switch {
	case bytes.Contains(msg, []byte(`"order.place"`)):
		out = append(out, `{"orderId":1,"status":"NEW","fills":[]}}`...)
	case bytes.Contains(msg, []byte(`"order.cancel"`)):
		out = append(out, `{"orderId":1,"status":"CANCELED"}}`...)
	default:
		out = append(out, `[]}`...)
	}
	// the three frames in one write, as the edge coalesces its output per loop iteration
	var b []byte
	for _, m := range [][]byte{pushOrder, pushBalance, out} {
		b = serverFrame(b, m)
	}
	_, err := c.NetConn().Write(b)
	return err
}

// serverFrame appends an unmasked final text frame (server to client, RFC 6455 5.2).
func serverFrame(b, p []byte) []byte {
	b = append(b, 0x80|opText)
	if n := len(p); n < 126 {
		b = append(b, byte(n))
	} else {
		b = append(b, 126, byte(n>>8), byte(n)) // the sink's messages are far below 64 KiB
	}
	return append(b, p...)
}
