package h2

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Limits are the settings one side of a connection enforces on what it
// receives. Zero fields take the defaults noted.
type Limits struct {
	// MaxConcurrentStreams is the number of streams the peer may open
	// (server side; default 250).
	MaxConcurrentStreams uint32
	// MaxReadFrameSize is the largest frame payload accepted (default 16 KiB,
	// the RFC 9113 default).
	MaxReadFrameSize uint32
	// MaxHeaderListSize bounds a decoded header block, counted as RFC 9113
	// §6.5.2 does, and is advertised as SETTINGS_MAX_HEADER_LIST_SIZE
	// (default 1 MiB). A server answers a larger request block 431 (see
	// [Server.HeadLimits] for the finer limits checked within it).
	MaxHeaderListSize uint32
	// HeaderTableSize is the HPACK table size used both ways (default 4 KiB).
	HeaderTableSize uint32
	// StreamWindow and ConnWindow are the receive windows per stream and
	// per connection (defaults 1 MiB and 2 MiB).
	StreamWindow, ConnWindow int32
	// WriteTimeout drops a connection whose peer reads nothing for this
	// long while frames wait to be written (default 30s).
	WriteTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = 250
	}
	if l.MaxReadFrameSize == 0 {
		l.MaxReadFrameSize = defaultMaxFrameSize
	}
	l.MaxReadFrameSize = min(max(l.MaxReadFrameSize, defaultMaxFrameSize), 1<<24-1)
	if l.MaxHeaderListSize == 0 {
		l.MaxHeaderListSize = 1 << 20
	}
	if l.HeaderTableSize == 0 {
		l.HeaderTableSize = 4 << 10
	}
	if l.StreamWindow <= 0 {
		l.StreamWindow = 1 << 20
	}
	if l.ConnWindow <= 0 {
		l.ConnWindow = 2 << 20
	}
	l.StreamWindow = max(l.StreamWindow, defaultWindow)
	l.ConnWindow = max(l.ConnWindow, defaultWindow)
	if l.WriteTimeout == 0 {
		l.WriteTimeout = 30 * time.Second
	}
	return l
}

// Events receives what arrives on a stream. Its methods are called on the
// connection's reading goroutine, one at a time per connection, and must
// not block: a relay forwards to another connection's buffer, a handler
// body queues.
type Events interface {
	// Headers delivers a header block: the response head (client side,
	// ":status" included) and trailers (end is then true). fields, and
	// their array, are valid only during the call (their strings are
	// not reused): copy what is kept.
	Headers(s *Stream, fields []hpack.HeaderField, end bool)
	// Data delivers DATA payload, valid only during the call. The consumer
	// returns the bytes' flow-control credit with [Stream.Credit] once it
	// no longer holds them (a relay stream with [Stream.SetCreditTo] does
	// this when it has written them on).
	Data(s *Stream, p []byte, end bool)
	// Reset reports that the stream ended abnormally: the peer reset it,
	// the connection closed or failed, or a stream error was detected
	// (err is a [StreamError] or [ErrConnClosed]). No event follows.
	Reset(s *Stream, err error)
}

// StreamError is a stream reset, received or sent, with its HTTP/2 code.
type StreamError struct {
	Code http2.ErrCode
	// Remote is true when the peer sent the RST_STREAM.
	Remote bool
}

// Error names the code and who reset the stream.
func (e StreamError) Error() string {
	if e.Remote {
		return "stream reset by peer: " + e.Code.String()
	}
	return "stream reset: " + e.Code.String()
}

// ErrConnClosed ends the streams of a connection that closed or failed.
var ErrConnClosed = errors.New("http2 connection closed")

// errRefused ends client streams the server will not process (GOAWAY
// with a lower last stream ID, or REFUSED_STREAM): safe to retry.
var errRefused = StreamError{Code: http2.ErrCodeRefusedStream, Remote: true}

// conn is one HTTP/2 connection, either side. It has one reading
// goroutine (readLoop) that dispatches frames and one writing goroutine
// (writeLoop) that writes whatever frames were appended to out since its
// last write, in one syscall.
type conn struct {
	nc     net.Conn
	client bool
	lim    Limits
	logger *slog.Logger
	br     *bufio.Reader
	fr     *http2.Framer
	hr     *headerReader // decodes header blocks for fr
	srv    *serverConn   // server side
	cli    *ClientConn   // client side

	// dispatching is true while the reading goroutine handles frames it
	// has buffered; kicks of writers are deferred to the end of that
	// batch, so frames produced by one read leave in one write.
	dispatching atomic.Bool
	dmu         sync.Mutex
	deferred    []*conn

	// batch counts the reading goroutine's batches; batchNote is what
	// Stream.SetBatchNote stored during batch noteBatch. Both belong to
	// the reading goroutine.
	batch, noteBatch uint64
	batchNote        any

	wakeup chan struct{} // cap 1: the writer has something to write
	done   chan struct{} // closed when the connection is torn down

	mu          sync.Mutex // guards everything below, and Stream fields
	out         []byte     // frames not yet handed to the writer
	spare       []byte
	hw          *headerWriter
	streams     map[uint32]*Stream
	blocked     []*Stream // streams with data waiting for send window
	sendWindow  int64     // connection send window the peer granted
	recvWindow  int64     // connection bytes the peer may still send
	recvCredit  int64     // consumed connection bytes not yet granted back
	peerWindow  int32     // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame   int       // the peer's SETTINGS_MAX_FRAME_SIZE
	peerStreams uint32    // the peer's SETTINGS_MAX_CONCURRENT_STREAMS
	sawSettings bool      // the peer's first SETTINGS arrived
	settingsCh  chan struct{}
	goAwaySent  bool
	goAwayRecv  bool
	closing     bool // write what is queued, then close
	closed      bool
	// extendedConnect is set on server connections that advertise
	// RFC 8441 extended CONNECT.
	extendedConnect bool

	frames     atomic.Uint64 // frames read, for the client's keepalive
	writerDone chan struct{} // closed when writeLoop returns
}

func newConn(nc net.Conn, client bool, lim Limits, logger *slog.Logger) *conn {
	lim = lim.withDefaults()
	c := &conn{
		nc:          nc,
		client:      client,
		lim:         lim,
		logger:      logger,
		br:          bufio.NewReaderSize(nc, 32<<10),
		wakeup:      make(chan struct{}, 1),
		done:        make(chan struct{}),
		streams:     map[uint32]*Stream{},
		sendWindow:  defaultWindow,
		recvWindow:  defaultWindow,
		peerWindow:  defaultWindow,
		peerFrame:   defaultMaxFrameSize,
		peerStreams: ^uint32(0),
		settingsCh:  make(chan struct{}),
		writerDone:  make(chan struct{}),
	}
	c.fr = http2.NewFramer(nil, c.br)
	c.fr.SetMaxReadFrameSize(lim.MaxReadFrameSize)
	c.fr.SetReuseFrames()
	c.hr = newHeaderReader(lim.HeaderTableSize, lim.MaxHeaderListSize)
	c.hw = newHeaderWriter(lim.HeaderTableSize)
	return c
}

// writeInitialSettings queues this side's SETTINGS and the connection
// window increase; the caller holds c.mu or owns c exclusively.
func (c *conn) writeInitialSettings() {
	s := []http2.Setting{
		{ID: http2.SettingMaxFrameSize, Val: c.lim.MaxReadFrameSize},
		{ID: http2.SettingInitialWindowSize, Val: uint32(c.lim.StreamWindow)},
		{ID: http2.SettingMaxHeaderListSize, Val: c.lim.MaxHeaderListSize},
		{ID: http2.SettingHeaderTableSize, Val: c.lim.HeaderTableSize},
	}
	if c.client {
		s = append(s, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	} else {
		s = append(s, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.lim.MaxConcurrentStreams})
		if c.extendedConnect {
			s = append(s, http2.Setting{ID: http2.SettingEnableConnectProtocol, Val: 1})
		}
	}
	c.out = appendSettings(c.out, s...)
	if inc := int64(c.lim.ConnWindow) - defaultWindow; inc > 0 {
		c.out = appendWindowUpdate(c.out, 0, uint32(inc))
		c.recvWindow += inc
	}
}

// kick wakes the writer, now or, when the reading goroutine of src is
// dispatching a batch of frames, at the end of that batch.
func (c *conn) kick(src *conn) {
	if src != nil && src.dispatching.Load() {
		src.dmu.Lock()
		found := false
		for _, d := range src.deferred {
			if d == c {
				found = true
				break
			}
		}
		if !found {
			src.deferred = append(src.deferred, c)
		}
		src.dmu.Unlock()
		// The batch may have ended between the check and the append;
		// then nobody else will see the entry.
		if !src.dispatching.Load() {
			src.flushDeferred()
		}
		return
	}
	c.wake()
}

func (c *conn) wake() {
	select {
	case c.wakeup <- struct{}{}:
	default:
	}
}

// endBatch is called by the reading goroutine before it blocks on a read.
func (c *conn) endBatch() {
	c.batch++
	c.dispatching.Store(false)
	c.flushDeferred()
}

func (c *conn) flushDeferred() {
	var small [8]*conn
	c.dmu.Lock()
	list := append(small[:0], c.deferred...)
	clear(c.deferred)
	c.deferred = c.deferred[:0]
	c.dmu.Unlock()
	for _, d := range list {
		d.wake()
	}
}

// writeLoop writes queued frames until the connection is torn down.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	for {
		select {
		case <-c.wakeup:
		case <-c.done:
			return
		}
		c.mu.Lock()
		buf := c.out
		c.out = c.spare[:0]
		c.spare = nil
		c.mu.Unlock()
		if len(buf) > 0 {
			_ = c.nc.SetWriteDeadline(time.Now().Add(c.lim.WriteTimeout))
			if _, err := c.nc.Write(buf); err != nil {
				c.logger.Debug("http2 write failed", "remote", c.nc.RemoteAddr().String(), "error", err)
				_ = c.nc.Close() // the reader sees it and tears down
				return
			}
		}
		var credits []credit
		c.mu.Lock()
		if cap(buf) <= 2*outHighWater {
			c.spare = buf[:0]
		}
		if len(c.blocked) > 0 && len(c.out) < outHighWater && !c.closed {
			// Data that waited for room in the output.
			credits = c.flushBlockedLocked(credits)
		}
		more := len(c.out) > 0
		closing := c.closing
		c.mu.Unlock()
		applyCredits(credits, nil)
		if more {
			c.wake()
			continue
		}
		if closing {
			// Give the peer a moment to read the GOAWAY before the close
			// can turn into a reset that discards it.
			if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
				_ = tc.CloseWrite()
			}
			time.AfterFunc(time.Second, func() { _ = c.nc.Close() })
			return
		}
	}
}

// maxBatchFrames bounds how many frames one batch of writes waits for.
const maxBatchFrames = 64

// readLoop reads and dispatches frames until the connection fails or
// closes, then tears it down.
func (c *conn) readLoop() {
	defer c.teardown()
	first := true
	batch := 0
	for {
		// A batch ends before a read would block, or after enough frames
		// that forwarded ones do not wait for a busy reader.
		if batch++; c.br.Buffered() == 0 || batch > maxBatchFrames {
			c.endBatch()
			batch = 0
			if c.flooded() {
				c.logger.Warn("http2 peer sends frames that need answers but reads none; closing the connection",
					"remote", c.nc.RemoteAddr().String(), "queued_bytes", maxQueuedOut)
				return
			}
		}
		// HEADERS frames and their blocks are read by the headerReader,
		// the others by the Framer.
		var f http2.Frame
		fh, err := c.fr.ReadFrameHeader()
		if err == nil {
			if fh.Type == http2.FrameHeaders {
				f, err = c.hr.readHeaders(c.fr, c.br, fh)
			} else {
				f, err = c.fr.ReadFrameForHeader(fh)
			}
		}
		c.dispatching.Store(true)
		if err != nil {
			var se http2.StreamError
			switch {
			case errors.As(err, &se):
				if first {
					c.connError(http2.ErrCodeProtocol, "expected SETTINGS first")
					return
				}
				if c.srv != nil && se.StreamID > c.srv.maxStream && se.StreamID%2 == 1 {
					c.srv.maxStream = se.StreamID // opened, then refused
				}
				c.resetStream(se.StreamID, se.Code)
				continue
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.connError(http2.ErrCodeFrameSize, "frame too large")
			default:
				var ce http2.ConnectionError
				if errors.As(err, &ce) {
					msg := ""
					if d := cmp.Or(c.hr.detail, c.fr.ErrorDetail()); d != nil {
						msg = d.Error()
					}
					c.connError(http2.ErrCode(ce), msg)
				} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					c.logger.Debug("http2 read failed", "remote", c.nc.RemoteAddr().String(), "error", err)
				}
			}
			return
		}
		c.frames.Add(1)
		if first {
			sf, ok := f.(*http2.SettingsFrame)
			if !ok || sf.IsAck() {
				c.connError(http2.ErrCodeProtocol, "expected SETTINGS first")
				return
			}
			first = false
			if c.srv != nil {
				_ = c.nc.SetReadDeadline(time.Time{}) // the preface timeout is over
			}
		}
		if code, msg := c.dispatch(f); code != http2.ErrCodeNo {
			c.connError(code, msg)
			return
		}
	}
}

// dispatch handles one frame; a non-zero code is a connection error.
func (c *conn) dispatch(f http2.Frame) (http2.ErrCode, string) {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.MetaHeadersFrame:
		if c.srv != nil {
			return c.srv.onHeaders(f)
		}
		return c.cli.onHeaders(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.onRSTStream(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			// Any frame, this one included, tells the client's keepalive
			// the connection is alive (c.frames).
			return http2.ErrCodeNo, ""
		}
		c.mu.Lock()
		c.out = appendPing(c.out, true, f.Data)
		c.mu.Unlock()
		c.kick(c)
	case *http2.GoAwayFrame:
		c.onGoAway(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.PushPromiseFrame:
		return http2.ErrCodeProtocol, "PUSH_PROMISE is not allowed"
	}
	// Unknown frame types are ignored (RFC 9113 §4.1).
	return http2.ErrCodeNo, ""
}

// isIdle reports whether id names a stream that was never opened.
func (c *conn) isIdle(id uint32) bool {
	if c.srv != nil {
		return id%2 == 0 || id > c.srv.maxStream
	}
	return id%2 == 1 && id >= c.cli.nextID
}

func (c *conn) onData(f *http2.DataFrame) (http2.ErrCode, string) {
	id := f.StreamID
	n := int64(f.Length)
	data := f.Data()
	end := f.StreamEnded()
	c.mu.Lock()
	if n > c.recvWindow {
		c.mu.Unlock()
		return http2.ErrCodeFlowControl, "DATA exceeds the connection window"
	}
	c.recvWindow -= n
	s := c.streams[id]
	if s == nil || s.recvEnd {
		idle := s == nil && c.isIdle(id)
		c.grantConnLocked(n)
		c.mu.Unlock()
		if idle {
			return http2.ErrCodeProtocol, "DATA on an idle stream"
		}
		c.kick(c)
		// A stream we reset may still receive frames in flight; one that
		// ended its side gets STREAM_CLOSED.
		if s != nil || c.srv != nil {
			c.resetStream(id, http2.ErrCodeStreamClosed)
		}
		return http2.ErrCodeNo, ""
	}
	if n > int64(s.recvWindow) || (c.client && !s.gotResponse) {
		code := http2.ErrCodeFlowControl
		if n <= int64(s.recvWindow) {
			code = http2.ErrCodeProtocol // DATA before the response head
		}
		c.grantConnLocked(n)
		c.mu.Unlock()
		c.resetStream(id, code)
		return http2.ErrCodeNo, ""
	}
	s.recvWindow -= int32(n)
	if pad := n - int64(len(data)); pad > 0 {
		// Padding is consumed on arrival.
		c.grantLocked(s, pad)
	}
	s.recvLen += int64(len(data))
	if s.declLen >= 0 && (s.recvLen > s.declLen || (end && s.recvLen != s.declLen)) {
		c.grantConnLocked(int64(len(data)))
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeProtocol)
		return http2.ErrCodeNo, ""
	}
	if end {
		s.recvEnd = true
		c.maybeCloseLocked(s)
	}
	ev := s.events
	c.mu.Unlock()
	if ev != nil {
		ev.Data(s, data, end)
	} else if len(data) > 0 {
		s.Credit(len(data))
	}
	return http2.ErrCodeNo, ""
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) (http2.ErrCode, string) {
	var credits []credit
	c.mu.Lock()
	if f.StreamID == 0 {
		c.sendWindow += int64(f.Increment)
		if c.sendWindow > maxWindow {
			c.mu.Unlock()
			return http2.ErrCodeFlowControl, "connection window over 2^31-1"
		}
		credits = c.flushBlockedLocked(credits)
	} else {
		s := c.streams[f.StreamID]
		if s == nil {
			idle := c.isIdle(f.StreamID)
			c.mu.Unlock()
			if idle {
				return http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"
			}
			return http2.ErrCodeNo, ""
		}
		s.sendWindow += int64(f.Increment)
		if s.sendWindow > maxWindow {
			c.mu.Unlock()
			c.resetStream(f.StreamID, http2.ErrCodeFlowControl)
			return http2.ErrCodeNo, ""
		}
		credits = c.flushStreamLocked(s, credits)
	}
	c.mu.Unlock()
	c.kick(c)
	applyCredits(credits, c)
	return http2.ErrCodeNo, ""
}

func (c *conn) onRSTStream(f *http2.RSTStreamFrame) (http2.ErrCode, string) {
	c.mu.Lock()
	s := c.streams[f.StreamID]
	if s == nil {
		idle := c.isIdle(f.StreamID)
		c.mu.Unlock()
		if idle {
			return http2.ErrCodeProtocol, "RST_STREAM on an idle stream"
		}
		return http2.ErrCodeNo, ""
	}
	if c.client && f.ErrCode == http2.ErrCodeRefusedStream {
		c.removeLocked(s)
		c.mu.Unlock()
		s.end(errRefused, 0)
		return http2.ErrCodeNo, ""
	}
	pending := c.removeLocked(s)
	c.mu.Unlock()
	s.end(StreamError{Code: f.ErrCode, Remote: true}, pending)
	return http2.ErrCodeNo, ""
}

func (c *conn) onSettings(f *http2.SettingsFrame) (http2.ErrCode, string) {
	if f.IsAck() {
		return http2.ErrCodeNo, ""
	}
	if err := f.ForeachSetting(func(s http2.Setting) error { return s.Valid() }); err != nil {
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			return http2.ErrCode(ce), err.Error()
		}
		return http2.ErrCodeProtocol, err.Error()
	}
	var credits []credit
	c.mu.Lock()
	var code http2.ErrCode
	_ = f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingHeaderTableSize:
			c.hw.setMaxTableSize(min(s.Val, c.lim.HeaderTableSize))
		case http2.SettingMaxConcurrentStreams:
			c.peerStreams = s.Val
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - int64(c.peerWindow)
			c.peerWindow = int32(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					code = http2.ErrCodeFlowControl
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerFrame = int(s.Val)
		}
		return nil
	})
	if code != http2.ErrCodeNo {
		c.mu.Unlock()
		return code, "a stream window went over 2^31-1"
	}
	c.out = appendSettingsAck(c.out)
	for _, st := range c.streams {
		if len(st.pending) > 0 || st.pendingEnd {
			credits = c.flushStreamLocked(st, credits)
		}
	}
	first := !c.sawSettings
	c.sawSettings = true
	c.mu.Unlock()
	if first {
		close(c.settingsCh)
	}
	c.kick(c)
	applyCredits(credits, c)
	return http2.ErrCodeNo, ""
}

func (c *conn) onGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	c.goAwayRecv = true
	var refused []*Stream
	if c.client {
		for id, s := range c.streams {
			if id > f.LastStreamID {
				refused = append(refused, s)
				c.removeLocked(s)
			}
		}
	}
	empty := len(c.streams) == 0
	c.mu.Unlock()
	if f.ErrCode != http2.ErrCodeNo {
		c.logger.Debug("http2 peer sent GOAWAY", "remote", c.nc.RemoteAddr().String(), "code", f.ErrCode.String(), "debug", string(f.DebugData()))
	}
	for _, s := range refused {
		s.end(errRefused, 0)
	}
	if c.client && empty {
		c.closeGracefully()
	}
}

// connError sends GOAWAY with code and closes the connection once the
// frame is written.
func (c *conn) connError(code http2.ErrCode, msg string) {
	c.mu.Lock()
	if !c.closing && !c.closed {
		last := uint32(0)
		if c.srv != nil {
			last = c.srv.maxStream
		}
		c.out = appendGoAway(c.out, last, code, msg)
		c.goAwaySent = true
		c.closing = true
	}
	c.mu.Unlock()
	c.logger.Debug("http2 connection error", "remote", c.nc.RemoteAddr().String(), "code", code.String(), "detail", msg)
	c.wake()
}

// closeGracefully closes the connection once queued frames are written.
func (c *conn) closeGracefully() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.wake()
}

// resetStream ends stream id with RST_STREAM code (a stream error).
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	s := c.streams[id]
	if s == nil {
		if !c.closed {
			c.out = appendRSTStream(c.out, id, code)
		}
		c.mu.Unlock()
		c.kick(c)
		return
	}
	c.mu.Unlock()
	s.resetIfOpen(code, c)
}

// teardown ends every stream and releases the connection; it runs once,
// when the reading goroutine exits.
func (c *conn) teardown() {
	c.endBatch()
	c.mu.Lock()
	c.closed = true
	streams := make([]*Stream, 0, len(c.streams))
	for _, s := range c.streams {
		streams = append(streams, s)
		c.removeLocked(s)
	}
	closing := c.closing
	c.mu.Unlock()
	if closing {
		// Let the writer finish the GOAWAY before the socket closes.
		select {
		case <-c.writerDone:
		case <-time.After(time.Second):
		}
	}
	close(c.done)
	_ = c.nc.Close()
	for _, s := range streams {
		s.end(ErrConnClosed, 0)
	}
	if c.srv != nil {
		c.srv.teardown()
	}
	if c.cli != nil {
		c.cli.teardown()
	}
}

// grantConnLocked gives n connection-level bytes back to the peer,
// batching WINDOW_UPDATEs until a quarter of the window is owed.
func (c *conn) grantConnLocked(n int64) {
	c.recvCredit += n
	if c.recvCredit >= int64(c.lim.ConnWindow)/4 && !c.closed {
		c.out = appendWindowUpdate(c.out, 0, uint32(c.recvCredit))
		c.recvWindow += c.recvCredit
		c.recvCredit = 0
	}
}

// grantLocked gives n bytes of s back to the peer (stream and connection).
func (c *conn) grantLocked(s *Stream, n int64) {
	c.grantConnLocked(n)
	if s.gone || s.recvEnd {
		return
	}
	s.recvCredit += int32(n)
	if s.recvCredit >= c.lim.StreamWindow/4 {
		c.out = appendWindowUpdate(c.out, s.id, uint32(s.recvCredit))
		s.recvWindow += s.recvCredit
		s.recvCredit = 0
	}
}

// removeLocked forgets s and returns the bytes it still held for sending
// (their credit goes back to whoever gave them).
func (c *conn) removeLocked(s *Stream) int {
	if s.gone {
		return 0
	}
	s.gone = true
	delete(c.streams, s.id)
	if s.readTimer != nil {
		s.readTimer.Stop()
	}
	if s.writeTimer != nil {
		s.writeTimer.Stop()
	}
	pending := len(s.pending)
	s.pending = nil
	s.pendingEnd = false
	s.pendingTrailers = nil
	if s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
	if c.srv != nil {
		c.srv.streamClosedLocked(s)
	} else if c.goAwayRecv && len(c.streams) == 0 {
		// The server is going away and the last stream is done.
		c.closing = true
		c.wake()
	}
	return pending
}

// maybeCloseLocked forgets s once both sides have ended it, or once its
// sending side has when StopReceiving asked for that.
func (c *conn) maybeCloseLocked(s *Stream) {
	if !s.sentEnd || len(s.pending) > 0 || s.pendingEnd {
		return
	}
	if s.recvEnd {
		c.removeLocked(s)
	} else if s.stopRecv && !s.gone {
		c.out = appendRSTStream(c.out, s.id, http2.ErrCodeNo)
		c.removeLocked(s)
	}
}

// StopReceiving tells the peer, once everything written on s has been
// sent, that the rest of its stream is not needed: RST_STREAM NO_ERROR
// (RFC 9113 §8.1), unless the peer has ended its side by then.
func (s *Stream) StopReceiving() {
	c := s.c
	c.mu.Lock()
	s.stopRecv = true
	before := len(c.out)
	c.maybeCloseLocked(s)
	wrote := len(c.out) != before
	c.mu.Unlock()
	if wrote {
		c.kick(s.src())
	}
}

// Context returns the context of the stream's connection (server side:
// the listener's base context).
func (s *Stream) Context() context.Context {
	if s.c.srv != nil {
		return s.c.srv.ctx
	}
	return context.Background()
}

// credit is flow-control credit owed to a stream on another connection.
type credit struct {
	to *Stream
	n  int
}

func applyCredits(list []credit, src *conn) {
	for _, cr := range list {
		cr.to.credit(cr.n, src)
	}
}

// flushBlockedLocked sends pending data of streams that waited for the
// connection window.
func (c *conn) flushBlockedLocked(credits []credit) []credit {
	list := c.blocked
	c.blocked = nil
	for i, s := range list {
		s.listed = false
		if c.sendWindow <= 0 || len(c.out) >= outHighWater {
			for _, rest := range list[i:] {
				if !rest.gone && !rest.listed {
					rest.listed = true
					c.blocked = append(c.blocked, rest)
				}
			}
			break
		}
		if !s.gone {
			credits = c.flushStreamLocked(s, credits)
		}
	}
	return credits
}

// flushStreamLocked writes as much of s's pending data as the windows
// allow, then its END_STREAM or trailers when everything is out.
func (c *conn) flushStreamLocked(s *Stream, credits []credit) []credit {
	if s.gone {
		return credits
	}
	if len(s.pending) > 0 {
		n := c.sendableLocked(s, len(s.pending))
		if n > 0 {
			last := n == len(s.pending) && s.pendingEnd && s.pendingTrailers == nil
			c.appendDataLocked(s, s.pending[:n], last)
			if s.creditTo != nil {
				credits = append(credits, credit{to: s.creditTo, n: n})
			}
			rest := copy(s.pending, s.pending[n:])
			s.pending = s.pending[:rest]
			if last {
				s.pendingEnd = false
				s.sentEnd = true
			}
		}
		if len(s.pending) > 0 {
			c.listBlockedLocked(s)
			return credits
		}
	}
	if s.pendingTrailers != nil {
		c.encodeHeadersLocked(s.id, s.pendingTrailers, true)
		s.pendingTrailers = nil
		s.pendingEnd = false
		s.sentEnd = true
	} else if s.pendingEnd {
		c.out = appendData(c.out, s.id, true, nil)
		s.pendingEnd = false
		s.sentEnd = true
	}
	if s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
	c.maybeCloseLocked(s)
	return credits
}

func (c *conn) listBlockedLocked(s *Stream) {
	if !s.listed {
		s.listed = true
		c.blocked = append(c.blocked, s)
	}
}

// sendableLocked returns how many of want bytes the windows allow now.
func (c *conn) sendableLocked(s *Stream, want int) int {
	n := int64(want)
	n = min(n, s.sendWindow, c.sendWindow, int64(outHighWater-len(c.out)))
	if n < 0 {
		return 0
	}
	return int(n)
}

// Output bounds. DATA is appended to a connection's output only while it
// holds less than outHighWater bytes not yet written: past that, data
// waits in its stream (whose writer waits, or whose relayed source gets
// no flow-control credit), however large a window the peer grants, so a
// peer that stops reading pins little memory. Only control frames (PING
// and SETTINGS acknowledgements, RST_STREAM, WINDOW_UPDATE) and headers
// can grow the output further; a peer that makes it pass maxQueuedOut
// without reading (a ping or reset flood, CVE-2019-9512/9514) is
// disconnected.
const (
	outHighWater = 256 << 10
	maxQueuedOut = 16 << 20
)

// flooded reports whether the output passed maxQueuedOut.
func (c *conn) flooded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out) > maxQueuedOut
}

// appendDataLocked writes p as DATA frames no larger than the peer's
// frame size and takes it from the windows.
func (c *conn) appendDataLocked(s *Stream, p []byte, end bool) {
	s.sendWindow -= int64(len(p))
	c.sendWindow -= int64(len(p))
	for {
		chunk := p
		if len(chunk) > c.peerFrame {
			chunk = chunk[:c.peerFrame]
		}
		p = p[len(chunk):]
		c.out = appendData(c.out, s.id, end && len(p) == 0, chunk)
		if len(p) == 0 {
			return
		}
	}
}

// encodeHeadersLocked HPACK-encodes fields and appends the block.
func (c *conn) encodeHeadersLocked(id uint32, fields []hpack.HeaderField, end bool) {
	c.out = appendHeaderBlock(c.out, id, end, c.hw.encode(fields), c.peerFrame)
}

// Stream is one HTTP/2 stream of a connection, server or client side.
// Its methods are safe for concurrent use.
type Stream struct {
	c        *conn
	id       uint32
	events   Events
	creditTo *Stream

	// Guarded by c.mu.
	sendWindow      int64
	recvWindow      int32
	recvCredit      int32
	pending         []byte // data waiting for send window
	pendingEnd      bool   // END_STREAM follows the pending data
	pendingTrailers []hpack.HeaderField
	sentHeaders     bool
	gotResponse     bool // client: the final response head arrived
	sentEnd         bool
	recvEnd         bool
	gone            bool // removed from the connection
	listed          bool // in c.blocked
	declLen         int64
	recvLen         int64
	drained         chan struct{} // closed when pending empties or the stream goes
	handler         bool          // server: served by a Handler goroutine
	stopRecv        bool          // RST_STREAM NO_ERROR once our side is sent
	readTimer       *time.Timer   // server ReadTimeout
	writeTimer      *time.Timer   // server WriteTimeout
	ended           atomic.Bool   // Reset event delivered
}

func (c *conn) newStreamLocked(id uint32) *Stream {
	s := &Stream{
		c:          c,
		id:         id,
		sendWindow: int64(c.peerWindow),
		recvWindow: c.lim.StreamWindow,
		declLen:    -1,
	}
	c.streams[id] = s
	return s
}

// ID returns the stream identifier.
func (s *Stream) ID() uint32 { return s.id }

// SetEvents sets the receiver of the stream's frames. A server stream
// gets it from the Intercept hook's result; call it before any frame can
// arrive.
func (s *Stream) setEvents(ev Events) {
	s.c.mu.Lock()
	s.events = ev
	s.c.mu.Unlock()
}

// SetCreditTo makes s give the flow-control credit of data it writes to
// src: when bytes received on src are written on s (now, or later when
// s's send window opens), src grants them back to its peer. A relay sets
// it on both of its streams. It also lets writes on s join the frame
// batch of src's reading goroutine.
func (s *Stream) SetCreditTo(src *Stream) {
	s.c.mu.Lock()
	s.creditTo = src
	s.c.mu.Unlock()
}

// Credit gives n consumed bytes back to the peer's flow-control windows.
func (s *Stream) Credit(n int) { s.credit(n, nil) }

func (s *Stream) credit(n int, src *conn) {
	if n <= 0 {
		return
	}
	c := s.c
	c.mu.Lock()
	before := len(c.out)
	c.grantLocked(s, int64(n))
	wrote := len(c.out) != before
	c.mu.Unlock()
	if wrote {
		c.kick(src)
	}
}

// src returns the connection whose reading goroutine a write on s most
// likely runs on, for batching.
func (s *Stream) src() *conn {
	if s.creditTo != nil {
		return s.creditTo.c
	}
	return nil
}

// errStreamGone is returned by writes on a stream that was reset or whose
// connection closed.
var errStreamGone = errors.New("http2 stream closed")

// WriteHeaders sends a header block; end closes the sending side. Trailers
// (end true after data) wait behind data still pending for window.
func (s *Stream) WriteHeaders(fields []hpack.HeaderField, end bool) error {
	c := s.c
	c.mu.Lock()
	if s.gone || s.sentEnd || s.pendingEnd || c.closed {
		c.mu.Unlock()
		return errStreamGone
	}
	if len(s.pending) > 0 {
		if !end {
			c.mu.Unlock()
			return errors.New("http2: headers must follow all data")
		}
		s.pendingTrailers = append([]hpack.HeaderField(nil), fields...)
		s.pendingEnd = true
		c.mu.Unlock()
		return nil
	}
	c.encodeHeadersLocked(s.id, fields, end)
	s.sentHeaders = true
	if end {
		s.sentEnd = true
		c.maybeCloseLocked(s)
	}
	c.mu.Unlock()
	c.kick(s.src())
	return nil
}

// WriteData sends p (end closes the sending side). What the flow-control
// windows do not allow now is copied and sent when they open; see
// [Stream.WaitDrained] to bound it.
func (s *Stream) WriteData(p []byte, end bool) error {
	c := s.c
	c.mu.Lock()
	if s.gone || s.sentEnd || s.pendingEnd || c.closed {
		c.mu.Unlock()
		return errStreamGone
	}
	sent := 0
	if len(s.pending) == 0 {
		sent = c.sendableLocked(s, len(p))
		if sent > 0 || (len(p) == 0 && end) {
			c.appendDataLocked(s, p[:sent], end && sent == len(p))
		}
		if sent == len(p) && end {
			s.sentEnd = true
			c.maybeCloseLocked(s)
		}
	}
	// What the windows do not take now waits, and so does an END_STREAM
	// behind waiting data (an empty final write must not overtake it, nor
	// be lost).
	if sent < len(p) || (end && !s.sentEnd) {
		s.pending = append(s.pending, p[sent:]...)
		s.pendingEnd = end
		c.listBlockedLocked(s)
	}
	to := s.creditTo
	c.mu.Unlock()
	c.kick(s.src())
	if to != nil && sent > 0 {
		to.credit(sent, to.c)
	}
	return nil
}

// WaitDrained blocks until s has no data waiting for send window, the
// stream is gone, or done is closed. It returns errStreamGone when the
// stream was reset or its connection closed.
func (s *Stream) WaitDrained(done <-chan struct{}) error {
	c := s.c
	for {
		c.mu.Lock()
		if len(s.pending) == 0 {
			gone := s.gone && !s.sentEnd
			c.mu.Unlock()
			if gone {
				return errStreamGone
			}
			return nil
		}
		if s.drained == nil {
			s.drained = make(chan struct{})
		}
		ch := s.drained
		c.mu.Unlock()
		select {
		case <-ch:
		case <-done:
			return errStreamGone
		}
	}
}

// Reset ends the stream with RST_STREAM code, unless it already ended.
func (s *Stream) Reset(code http2.ErrCode) {
	c := s.c
	c.mu.Lock()
	if s.gone {
		c.mu.Unlock()
		return
	}
	pending := c.removeLocked(s)
	if !c.closed {
		c.out = appendRSTStream(c.out, s.id, code)
	}
	c.mu.Unlock()
	c.kick(s.src())
	if to := s.creditTo; to != nil && pending > 0 {
		to.credit(pending, to.c)
	}
	s.ended.Store(true) // the owner reset it; no Reset event
}

// resetIfOpen resets the stream with code, as a stream error, unless it
// has already gone: the owner's Events get the Reset event.
func (s *Stream) resetIfOpen(code http2.ErrCode, src *conn) {
	c := s.c
	c.mu.Lock()
	if s.gone {
		c.mu.Unlock()
		return
	}
	pending := c.removeLocked(s)
	if !c.closed {
		c.out = appendRSTStream(c.out, s.id, code)
	}
	c.mu.Unlock()
	c.kick(src)
	s.end(StreamError{Code: code}, pending)
}

// end delivers the Reset event once, and returns the credit of pending
// bytes to their source.
func (s *Stream) end(err error, pending int) {
	if to := s.creditTo; to != nil && pending > 0 {
		to.credit(pending, s.c)
	}
	if s.ended.Swap(true) {
		return
	}
	s.c.mu.Lock()
	ev := s.events
	s.c.mu.Unlock()
	if ev != nil {
		ev.Reset(s, err)
	}
}

// String names the stream for logs.
func (s *Stream) String() string {
	return fmt.Sprintf("stream %d on %s", s.id, s.c.nc.RemoteAddr())
}

// BatchNote returns what [Stream.SetBatchNote] stored while the
// connection's reading goroutine handled the current batch of frames
// (those that arrived in one read), or nil. It lets a decision made for
// one stream be reused for the streams that arrived with it: the relay
// sends calls that came together to one target. Call it only on the
// reading goroutine: from [Server].Intercept or from the Events of this
// connection's streams.
func (s *Stream) BatchNote() any {
	if c := s.c; c.noteBatch == c.batch {
		return c.batchNote
	}
	return nil
}

// SetBatchNote stores v for the rest of the current batch (see
// [Stream.BatchNote]); the same goroutine rule applies.
func (s *Stream) SetBatchNote(v any) { s.c.batchNote, s.c.noteBatch = v, s.c.batch }
