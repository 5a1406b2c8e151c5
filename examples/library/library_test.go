package library_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	libraryv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/examples/library/v1"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func newClient(t *testing.T) (context.Context, libraryv1.LibraryServiceClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx, libraryv1.NewLibraryServiceClient(testkit.StartBackend(t).Dial(t))
}

func wantCode(t *testing.T, err error, code codes.Code) *status.Status {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("got %v; want %v", st, code)
	}
	return st
}

func TestSeeded(t *testing.T) {
	t.Parallel()
	ctx, c := newClient(t)
	shelves, err := c.ListShelves(ctx, &libraryv1.ListShelvesRequest{})
	if err != nil || len(shelves.GetShelves()) != 2 || shelves.GetShelves()[0].GetName() != "shelves/1" {
		t.Fatalf("ListShelves = %v, %v; want shelves/1 and shelves/2", shelves, err)
	}
	book, err := c.GetBook(ctx, &libraryv1.GetBookRequest{Name: "shelves/1/books/1"})
	if err != nil || book.GetTitle() != "Dune" || book.GetState() != libraryv1.BookState_BOOK_STATE_PUBLISHED {
		t.Fatalf("GetBook = %v, %v; want published Dune", book, err)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx, c := newClient(t)

	_, err := c.GetShelf(ctx, &libraryv1.GetShelfRequest{Name: "shelves/99"})
	st := wantCode(t, err, codes.NotFound)
	if info, ok := st.Details()[0].(*errdetails.ResourceInfo); !ok || info.GetResourceName() != "shelves/99" {
		t.Errorf("NotFound details = %v; want ResourceInfo shelves/99", st.Details())
	}

	_, err = c.GetBook(ctx, &libraryv1.GetBookRequest{Name: "books/1"})
	st = wantCode(t, err, codes.InvalidArgument)
	if br, ok := st.Details()[0].(*errdetails.BadRequest); !ok || br.GetFieldViolations()[0].GetField() != "name" {
		t.Errorf("InvalidArgument details = %v; want BadRequest on name", st.Details())
	}

	_, err = c.CreateBook(ctx, &libraryv1.CreateBookRequest{Parent: "shelves/1", BookId: "1", Book: &libraryv1.Book{Title: "Again"}})
	wantCode(t, err, codes.AlreadyExists)

	_, err = c.CreateShelf(ctx, &libraryv1.CreateShelfRequest{Shelf: &libraryv1.Shelf{}})
	wantCode(t, err, codes.InvalidArgument)
}

func TestBookLifecycle(t *testing.T) {
	t.Parallel()
	ctx, c := newClient(t)

	shelf, err := c.CreateShelf(ctx, &libraryv1.CreateShelfRequest{Shelf: &libraryv1.Shelf{Theme: "Poetry"}})
	if err != nil || shelf.GetName() != "shelves/3" || shelf.GetCreateTime() == nil {
		t.Fatalf("CreateShelf = %v, %v; want shelves/3", shelf, err)
	}
	book, err := c.CreateBook(ctx, &libraryv1.CreateBookRequest{Parent: shelf.GetName(), BookId: "odes", Book: &libraryv1.Book{
		Title: "Odes", Author: "Keats", Labels: map[string]string{"a": "1"},
	}})
	if err != nil || book.GetName() != "shelves/3/books/odes" || book.GetState() != libraryv1.BookState_BOOK_STATE_DRAFT {
		t.Fatalf("CreateBook = %v, %v; want draft shelves/3/books/odes", book, err)
	}

	upd, err := c.UpdateBook(ctx, &libraryv1.UpdateBookRequest{
		Book:       &libraryv1.Book{Name: book.GetName(), Title: "Odes and Sonnets", Author: "ignored"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"title"}},
	})
	if err != nil || upd.GetTitle() != "Odes and Sonnets" || upd.GetAuthor() != "Keats" || upd.GetLabels()["a"] != "1" {
		t.Fatalf("UpdateBook(title) = %v, %v; want new title, same author and labels", upd, err)
	}
	_, err = c.UpdateBook(ctx, &libraryv1.UpdateBookRequest{
		Book:       &libraryv1.Book{Name: book.GetName()},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"state"}},
	})
	wantCode(t, err, codes.InvalidArgument)

	pub, err := c.PublishBook(ctx, &libraryv1.PublishBookRequest{Name: book.GetName()})
	if err != nil || pub.GetState() != libraryv1.BookState_BOOK_STATE_PUBLISHED {
		t.Fatalf("PublishBook = %v, %v; want PUBLISHED", pub, err)
	}

	_, err = c.MoveBook(ctx, &libraryv1.MoveBookRequest{Name: "shelves/1/books/1", OtherShelf: "shelves/2"})
	wantCode(t, err, codes.AlreadyExists) // shelves/2/books/1 exists
	moved, err := c.MoveBook(ctx, &libraryv1.MoveBookRequest{Name: book.GetName(), OtherShelf: "shelves/2"})
	if err != nil || moved.GetName() != "shelves/2/books/odes" {
		t.Fatalf("MoveBook = %v, %v; want shelves/2/books/odes", moved, err)
	}
	if _, err := c.MoveBook(ctx, &libraryv1.MoveBookRequest{Name: moved.GetName(), OtherShelf: shelf.GetName()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteShelf(ctx, &libraryv1.DeleteShelfRequest{Name: shelf.GetName()}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetBook(ctx, &libraryv1.GetBookRequest{Name: book.GetName()})
	wantCode(t, err, codes.NotFound)
}

func TestListBooks(t *testing.T) {
	t.Parallel()
	ctx, c := newClient(t)

	var names []string
	token := ""
	for range 5 {
		resp, err := c.ListBooks(ctx, &libraryv1.ListBooksRequest{Parent: "shelves/2", PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range resp.GetBooks() {
			names = append(names, b.GetName())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if want := []string{"shelves/2/books/1", "shelves/2/books/2"}; !cmp.Equal(names, want) {
		t.Errorf("paged names = %v; want %v", names, want)
	}

	for filter, want := range map[string]int{"state=DRAFT": 1, "author=martin kleppmann": 1, "tag=go": 1, "data": 1, "": 2} {
		resp, err := c.ListBooks(ctx, &libraryv1.ListBooksRequest{Parent: "shelves/2", Filter: filter})
		if err != nil || len(resp.GetBooks()) != want {
			t.Errorf("ListBooks(filter %q) = %v, %v; want %d books", filter, resp, err, want)
		}
	}
	_, err := c.ListBooks(ctx, &libraryv1.ListBooksRequest{Parent: "shelves/2", Filter: "color=red"})
	wantCode(t, err, codes.InvalidArgument)
}

func TestWatchBooks(t *testing.T) {
	t.Parallel()
	ctx, c := newClient(t)

	stream, err := c.WatchBooks(ctx, &libraryv1.WatchBooksRequest{Parent: "shelves/1", MaxEvents: 3})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ev, err := stream.Recv()
		if err != nil || ev.GetType() != libraryv1.BookEvent_TYPE_CREATED {
			t.Fatalf("initial event = %v, %v; want CREATED", ev, err)
		}
	}
	if _, err := c.PublishBook(ctx, &libraryv1.PublishBookRequest{Name: "shelves/1/books/1"}); err != nil {
		t.Fatal(err) // already published: no event
	}
	if _, err := c.UpdateBook(ctx, &libraryv1.UpdateBookRequest{Book: &libraryv1.Book{Name: "shelves/1/books/2", PageCount: 320},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"page_count"}}}); err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil || ev.GetType() != libraryv1.BookEvent_TYPE_UPDATED || ev.GetBook().GetPageCount() != 320 {
		t.Fatalf("change event = %v, %v; want UPDATED with 320 pages", ev, err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after max_events: %v; want EOF", err)
	}
}

func TestWatchBooksReplayOnly(t *testing.T) {
	t.Parallel()
	ctx, c := newClient(t)

	stream, err := c.WatchBooks(ctx, &libraryv1.WatchBooksRequest{Parent: "shelves/1", ReplayOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var titles []string
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || ev.GetType() != libraryv1.BookEvent_TYPE_CREATED {
			t.Fatalf("event = %v, %v; want CREATED", ev, err)
		}
		titles = append(titles, ev.GetBook().GetTitle())
	}
	if diff := cmp.Diff([]string{"Dune", "The Left Hand of Darkness"}, titles); diff != "" {
		t.Errorf("titles before the end of the stream (-want +got):\n%s", diff)
	}
}

func TestChat(t *testing.T) {
	t.Parallel()
	ctx, c := newClient(t)
	stream, err := c.Chat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&libraryv1.ChatMessage{User: "ann", Text: "hello"}); err != nil {
		t.Fatal(err)
	}
	reply, err := stream.Recv()
	if err != nil || reply.GetUser() != "library" || reply.GetText() != "ann said: hello" || reply.GetSentAt() == nil {
		t.Fatalf("reply = %v, %v; want library: ann said: hello", reply, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after CloseSend: %v; want EOF", err)
	}
}
