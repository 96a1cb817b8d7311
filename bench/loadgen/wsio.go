// The WebSocket client transport: raw non-blocking sockets, RFC 6455 framing, one epoll reactor.
//
// Why not a goroutine per connection (gorilla, as before): on the two cores of the bench machine,
// every request then cost a pacer nanosleep, a write, and a reader goroutine wake-up (futex, a
// second thread on the same core). Profiled in the self-test at 50 k/s, finish_task_switch and
// irq-restore were 30 % of the generator and it used its whole core. One locked OS thread now
// owns every connection: it sleeps in epoll_pwait2 (nanosecond timeout, 1 us timer slack) until
// the next request is due or an answer arrives, reads every ready socket once, and writes each
// connection's queued frames with one write per iteration.
//
// Client frames are masked (RFC 6455 5.3; a xorshift key per frame); server frames are read
// unmasked or masked, fragmented or not; ping is answered with pong, close ends the connection.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // RFC 6455 Sec-WebSocket-Accept is defined with SHA-1
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA

	sysEpollPwait2 = 441 // x86_64
	readChunk      = 256 << 10
	maxMessage     = 64 << 20
)

var errClosed = errors.New("closed by the server")

// rawConn is one client WebSocket on a raw socket. Not safe for concurrent use: the reactor's
// thread owns it once the handshake is done.
type rawConn struct {
	fd      int
	rbuf    []byte // received, not yet parsed
	frag    []byte // a fragmented message being assembled
	fragOp  byte
	wbuf    []byte // frames queued, not yet written (from woff)
	woff    int
	dirty   bool // queued in the reactor's flush list
	wantOut bool // EPOLLOUT registered (a write hit EAGAIN)
	mask    uint32
	err     error
}

func dialRaw(rawURL string, timeout time.Duration) (*rawConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveTCPAddr("tcp4", u.Host)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	c := &rawConn{fd: fd, rbuf: make([]byte, 0, readChunk)}
	var key [16]byte
	rand.Read(key[:]) //nolint:errcheck // never fails on Linux
	c.mask = binary.LittleEndian.Uint32(key[:4]) | 1
	tv := syscall.NsecToTimeval(int64(timeout))
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	for _, step := range []func() error{
		func() error { return syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv) },
		func() error { return syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv) },
		func() error { return syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1) },
		func() error { return syscall.Connect(fd, sa) },
	} {
		if err := step(); err != nil {
			syscall.Close(fd)
			return nil, err
		}
	}
	path := u.RequestURI()
	k := base64.StdEncoding.EncodeToString(key[:])
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, u.Host, k)
	if err := c.writeAll([]byte(req)); err != nil {
		c.close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	for {
		if i := bytes.Index(c.rbuf, []byte("\r\n\r\n")); i >= 0 {
			head := string(c.rbuf[:i])
			c.rbuf = append(c.rbuf[:0], c.rbuf[i+4:]...)
			sum := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) //nolint:gosec
			accept := base64.StdEncoding.EncodeToString(sum[:])
			if !bytes.HasPrefix([]byte(head), []byte("HTTP/1.1 101")) ||
				!bytes.Contains(bytes.ToLower([]byte(head)), bytes.ToLower([]byte("sec-websocket-accept: "+accept))) {
				c.close()
				return nil, fmt.Errorf("handshake refused: %.200q", head)
			}
			return c, nil
		}
		if len(c.rbuf) > 16<<10 {
			c.close()
			return nil, fmt.Errorf("handshake: response header too long")
		}
		if err := c.readOnce(); err != nil {
			c.close()
			return nil, fmt.Errorf("handshake: %w", err)
		}
	}
}

// readOnce appends what one read returns (blocking or not, per the socket's mode).
func (c *rawConn) readOnce() error {
	if cap(c.rbuf)-len(c.rbuf) < readChunk/4 {
		nb := make([]byte, len(c.rbuf), max(2*cap(c.rbuf), len(c.rbuf)+readChunk))
		copy(nb, c.rbuf)
		c.rbuf = nb
	}
	for {
		n, err := syscall.Read(c.fd, c.rbuf[len(c.rbuf):cap(c.rbuf)])
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return errClosed
		}
		c.rbuf = c.rbuf[:len(c.rbuf)+n]
		return nil
	}
}

// writeAll writes b on the (blocking) socket: the handshake and logon only.
func (c *rawConn) writeAll(b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(c.fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// queue appends one masked client frame (FIN set) with payload p to the write buffer.
func (c *rawConn) queue(op byte, p []byte) {
	b := append(c.wbuf, 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	c.mask ^= c.mask << 13 // xorshift32
	c.mask ^= c.mask >> 17
	c.mask ^= c.mask << 5
	b = binary.LittleEndian.AppendUint32(b, c.mask)
	start := len(b)
	b = append(b, p...)
	maskBytes(b[start:], c.mask)
	c.wbuf = b
}

// maskBytes XORs p with the 4-byte key k (as written little-endian on the wire).
func maskBytes(p []byte, k uint32) {
	k8 := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k8)
	}
	for ; i < len(p); i++ {
		p[i] ^= byte(k >> (8 * uint(i%4)))
	}
}

// flush writes what is queued; false when the socket is full (the rest stays queued).
func (c *rawConn) flush() bool {
	for c.woff < len(c.wbuf) {
		n, err := syscall.Write(c.fd, c.wbuf[c.woff:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			c.fail(err)
			c.wbuf, c.woff = c.wbuf[:0], 0
			return true
		}
		c.woff += n
	}
	c.wbuf, c.woff = c.wbuf[:0], 0
	return true
}

func (c *rawConn) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// next returns the next complete message in the receive buffer (data frames assembled; ping
// answered; close and protocol errors end the connection: nothing after them is returned), or
// ok=false when none is complete. The slice is valid until the next read.
func (c *rawConn) next(off *int) (msg []byte, ok bool) {
	for c.err == nil {
		b := c.rbuf[*off:]
		if len(b) < 2 {
			return nil, false
		}
		fin, op, masked := b[0]&0x80 != 0, b[0]&0x0F, b[1]&0x80 != 0
		n, h := int(b[1]&0x7F), 2
		switch n {
		case 126:
			if len(b) < 4 {
				return nil, false
			}
			n, h = int(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				return nil, false
			}
			v := binary.BigEndian.Uint64(b[2:])
			if v > maxMessage {
				c.fail(fmt.Errorf("frame of %d bytes", v))
				return nil, false
			}
			n, h = int(v), 10
		}
		var key uint32
		if masked {
			if len(b) < h+4 {
				return nil, false
			}
			key, h = binary.LittleEndian.Uint32(b[h:]), h+4
		}
		if len(b) < h+n {
			return nil, false
		}
		p := b[h : h+n]
		if masked {
			maskBytes(p, key)
		}
		*off += h + n
		switch op {
		case opText, opBinary:
			if fin {
				return p, true
			}
			c.frag, c.fragOp = append(c.frag[:0], p...), op
		case opCont:
			c.frag = append(c.frag, p...)
			if len(c.frag) > maxMessage {
				c.fail(fmt.Errorf("message over %d bytes", maxMessage))
				return nil, false
			}
			if fin {
				return c.frag, true
			}
		case opPing:
			c.queue(opPong, p)
		case opPong:
		case opClose:
			c.fail(errClosed)
			return nil, false
		default:
			c.fail(fmt.Errorf("unknown opcode %#x", op))
			return nil, false
		}
	}
	return nil, false
}

func (c *rawConn) close() {
	if c.fd >= 0 {
		syscall.Close(c.fd)
		c.fd = -1
	}
}

// reactor owns every connection once they are logged on; all its methods run on one locked
// OS thread (lock()).
type reactor struct {
	epfd   int
	conns  []*wsConn
	byFd   map[int32]*wsConn
	events []syscall.EpollEvent
	dirty  []*wsConn
}

func newReactor(conns []*wsConn) (*reactor, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r := &reactor{epfd: epfd, conns: conns, byFd: map[int32]*wsConn{},
		events: make([]syscall.EpollEvent, max(len(conns), 1))}
	for _, w := range conns {
		if err := syscall.SetNonblock(w.rc.fd, true); err != nil {
			return nil, err
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(w.rc.fd)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, w.rc.fd, &ev); err != nil {
			return nil, err
		}
		r.byFd[int32(w.rc.fd)] = w
	}
	return r, nil
}

// lock pins the calling goroutine to its OS thread with a 1 us timer slack; call it at the start
// of every regime (the reactor's sockets are only touched from that thread).
func (r *reactor) lock() func() {
	runtime.LockOSThread()
	const prSetTimerslack = 29
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, 1000, 0) //nolint:errcheck // best effort
	return runtime.UnlockOSThread
}

// mark queues w's connection for the next flush.
func (r *reactor) mark(w *wsConn) {
	if !w.rc.dirty {
		w.rc.dirty = true
		r.dirty = append(r.dirty, w)
	}
}

// flush writes every connection's queued frames (one write each, unless its socket is full).
func (r *reactor) flush() {
	for _, w := range r.dirty {
		c := w.rc
		c.dirty = false
		if c.fd < 0 {
			c.wbuf, c.woff = c.wbuf[:0], 0
			continue
		}
		full := !c.flush()
		if full != c.wantOut {
			c.wantOut = full
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(c.fd)}
			if full {
				ev.Events |= syscall.EPOLLOUT
			}
			syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev) //nolint:errcheck
		}
		if c.err != nil {
			w.dead(c.err)
		}
	}
	r.dirty = r.dirty[:0]
}

// poll waits up to timeoutNs (0: do not wait) for readable or writable sockets, reads each ready
// one once and hands every complete message to its connection; then flushes what the handlers
// queued. Returns the number of ready sockets.
func (r *reactor) poll(timeoutNs int64) int {
	ts := syscall.NsecToTimespec(max(timeoutNs, 0))
	n, _, errno := syscall.Syscall6(sysEpollPwait2, uintptr(r.epfd),
		uintptr(unsafe.Pointer(&r.events[0])), uintptr(len(r.events)),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
	if errno != 0 {
		if errno == syscall.EINTR {
			return 0
		}
		panic(fmt.Sprintf("epoll_pwait2: %v", errno))
	}
	for _, ev := range r.events[:n] {
		w := r.byFd[ev.Fd]
		if w == nil {
			continue
		}
		c := w.rc
		if ev.Events&syscall.EPOLLOUT != 0 {
			r.mark(w)
		}
		if ev.Events&(syscall.EPOLLIN|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			continue
		}
		err := c.readOnce()
		if err == syscall.EAGAIN {
			continue
		}
		now := nanotime()
		off := 0
		for {
			msg, ok := c.next(&off)
			if !ok {
				break
			}
			if w.onMessage(msg, now) {
				w.send(0, false)
			}
		}
		c.rbuf = append(c.rbuf[:0], c.rbuf[off:]...)
		if len(c.wbuf) > 0 {
			r.mark(w) // pongs, closed-loop requests
		}
		if err != nil {
			c.fail(err)
		}
		if c.err != nil {
			w.dead(c.err)
			syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil) //nolint:errcheck
		}
	}
	r.flush()
	return int(n)
}
