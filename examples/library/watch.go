package library

import (
	"errors"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	libraryv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/examples/library/v1"
)

// watchBuffer is how many events a watcher may lag behind before it is
// dropped (its stream ends with ABORTED).
const watchBuffer = 64

// watcher is one WatchBooks stream's subscription to a shelf.
type watcher struct {
	shelf    string // shelf name
	events   chan *libraryv1.BookEvent
	overflow bool // set, under Server.mu, before events is closed for lagging
}

// WatchBooks sends a CREATED event for each book on the shelf, then an event
// for every change, until the client cancels, max_events events were sent,
// or the shelf is deleted. With replay_only it ends after the CREATED events.
func (s *Server) WatchBooks(req *libraryv1.WatchBooksRequest, stream grpc.ServerStreamingServer[libraryv1.BookEvent]) error {
	if req.GetMaxEvents() < 0 {
		return badRequest("max_events", "must not be negative, got %d", req.GetMaxEvents())
	}
	s.mu.Lock()
	sh, err := s.shelfLocked("parent", req.GetParent())
	if err != nil {
		s.mu.Unlock()
		return err
	}
	w := &watcher{shelf: sh.msg.GetName(), events: make(chan *libraryv1.BookEvent, watchBuffer)}
	initial := sortedBooks(sh)
	for i, b := range initial {
		initial[i] = proto.CloneOf(b)
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()

	sent := int32(0)
	send := func(ev *libraryv1.BookEvent) (done bool, err error) {
		if err := stream.Send(ev); err != nil {
			return true, err
		}
		sent++
		return req.GetMaxEvents() > 0 && sent >= req.GetMaxEvents(), nil
	}
	for _, b := range initial {
		if done, err := send(&libraryv1.BookEvent{Type: libraryv1.BookEvent_TYPE_CREATED, Book: b}); done {
			return err
		}
	}
	if req.GetReplayOnly() {
		return nil
	}
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case ev, ok := <-w.events:
			if !ok {
				s.mu.Lock()
				overflow := w.overflow
				s.mu.Unlock()
				if overflow {
					return status.Errorf(codes.Aborted, "watch of %s fell more than %d events behind; watch again", w.shelf, watchBuffer)
				}
				return nil // the shelf was deleted
			}
			if done, err := send(ev); done {
				return err
			}
		}
	}
}

// publishLocked queues an event for the shelf's watchers, dropping those
// whose buffer is full. s.mu must be held; it never blocks.
func (s *Server) publishLocked(shelfName string, typ libraryv1.BookEvent_Type, b *libraryv1.Book) {
	for w := range s.watchers {
		if w.shelf != shelfName {
			continue
		}
		select {
		case w.events <- &libraryv1.BookEvent{Type: typ, Book: proto.CloneOf(b)}:
		default:
			w.overflow = true
			close(w.events)
			delete(s.watchers, w)
		}
	}
}

// closeWatchersLocked ends the streams watching a shelf. s.mu must be held.
func (s *Server) closeWatchersLocked(shelfName string) {
	for w := range s.watchers {
		if w.shelf == shelfName {
			close(w.events)
			delete(s.watchers, w)
		}
	}
}

// chatUser is the user name of the server's Chat replies.
const chatUser = "library"

// Chat answers each message with "<user> said: <text>" from user "library",
// until the client half-closes.
func (s *Server) Chat(stream grpc.BidiStreamingServer[libraryv1.ChatMessage, libraryv1.ChatMessage]) error {
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if strings.TrimSpace(msg.GetText()) == "" {
			return badRequest("text", "required")
		}
		user := msg.GetUser()
		if user == "" {
			user = "anonymous"
		}
		reply := &libraryv1.ChatMessage{
			User:   chatUser,
			Text:   user + " said: " + msg.GetText(),
			SentAt: timestamppb.New(s.now()),
		}
		if err := stream.Send(reply); err != nil {
			return err
		}
	}
}
