// Framing of the raw WebSocket client (wsio.go). Run by tests/unit/bench/test_e2e_smoke.py.
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// unframe parses one client frame as a server would: (fin, opcode, unmasked payload, size).
func unframe(t *testing.T, b []byte) (bool, byte, []byte, int) {
	t.Helper()
	if b[1]&0x80 == 0 {
		t.Fatalf("client frame not masked")
	}
	n, h := int(b[1]&0x7F), 2
	switch n {
	case 126:
		n, h = int(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		n, h = int(binary.BigEndian.Uint64(b[2:])), 10
	}
	key := b[h : h+4]
	p := append([]byte(nil), b[h+4:h+4+n]...)
	for i := range p {
		p[i] ^= key[i%4]
	}
	return b[0]&0x80 != 0, b[0] & 0x0F, p, h + 4 + n
}

func TestQueuedFramesAreMaskedAndSizedForEveryLengthEncoding(t *testing.T) {
	c := &rawConn{mask: 12345}
	var sent [][]byte
	for _, n := range []int{0, 1, 7, 125, 126, 127, 65535, 65536, 70000} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i*31 + n)
		}
		c.queue(opText, p)
		sent = append(sent, p)
	}
	b := c.wbuf
	for _, want := range sent {
		fin, op, got, size := unframe(t, b)
		if !fin || op != opText || !bytes.Equal(got, want) {
			t.Fatalf("frame of %d bytes: fin %v op %d equal %v", len(want), fin, op, bytes.Equal(got, want))
		}
		b = b[size:]
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes left over", len(b))
	}
}

func TestMaskKeysDiffer(t *testing.T) {
	c := &rawConn{mask: 1}
	seen := map[uint32]bool{}
	for i := 0; i < 1000; i++ {
		c.wbuf = c.wbuf[:0]
		c.queue(opText, []byte("x"))
		seen[binary.LittleEndian.Uint32(c.wbuf[2:6])] = true
	}
	if len(seen) != 1000 {
		t.Fatalf("%d distinct mask keys in 1000 frames", len(seen))
	}
}

// server frame, optionally masked, optionally not final
func sframe(op byte, fin bool, p []byte, key []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	m := byte(0)
	if key != nil {
		m = 0x80
	}
	switch n := len(p); {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126, byte(n>>8), byte(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if key != nil {
		b = append(b, key...)
		q := append([]byte(nil), p...)
		for i := range q {
			q[i] ^= key[i%4]
		}
		return append(b, q...)
	}
	return append(b, p...)
}

func TestServerFramesFragmentsPingAndClose(t *testing.T) {
	big := bytes.Repeat([]byte("z"), 70000)
	var in []byte
	in = append(in, sframe(opText, true, []byte(`{"id":1}`), nil)...)
	in = append(in, sframe(opText, false, []byte(`{"id":`), nil)...)
	in = append(in, sframe(opPing, true, []byte("hi"), nil)...) // control frame between fragments
	in = append(in, sframe(opCont, true, []byte(`2}`), []byte{1, 2, 3, 4})...)
	in = append(in, sframe(opBinary, true, big, nil)...)
	in = append(in, sframe(opClose, true, []byte{0x03, 0xE8}, nil)...)
	in = append(in, sframe(opText, true, []byte(`after close`), nil)...)
	c := &rawConn{mask: 7}
	// fed one byte at a time: every prefix is an incomplete frame until its last byte
	var got [][]byte
	off := 0
	for i := range in {
		c.rbuf = in[:i+1]
		for {
			m, ok := c.next(&off)
			if !ok {
				break
			}
			got = append(got, append([]byte(nil), m...))
		}
	}
	if len(got) != 3 || string(got[0]) != `{"id":1}` || string(got[1]) != `{"id":2}` || !bytes.Equal(got[2], big) {
		t.Fatalf("messages: %d, %q", len(got), got[:min(len(got), 2)])
	}
	if !errors.Is(c.err, errClosed) {
		t.Fatalf("close frame: err %v", c.err)
	}
	fin, op, p, _ := unframe(t, c.wbuf)
	if !fin || op != opPong || string(p) != "hi" {
		t.Fatalf("pong: fin %v op %d payload %q", fin, op, p)
	}
}

func TestOversizedFrameEndsTheConnection(t *testing.T) {
	b := []byte{0x81, 127}
	b = binary.BigEndian.AppendUint64(b, maxMessage+1)
	c := &rawConn{rbuf: b}
	off := 0
	if _, ok := c.next(&off); ok || c.err == nil {
		t.Fatalf("ok %v err %v", ok, c.err)
	}
}
