package library

import (
	"cmp"
	"context"
	"encoding/base64"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	libraryv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/examples/library/v1"
)

const (
	defaultPageSize = 10
	maxPageSize     = 100
)

// idPattern is what a client-chosen book ID must match (AIP-122).
var idPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Server implements rosetta.examples.library.v1.LibraryService in memory.
// It is safe for concurrent use. Create it with [NewServer].
type Server struct {
	libraryv1.UnimplementedLibraryServiceServer

	now func() time.Time

	mu        sync.Mutex
	shelves   map[string]*shelf // by shelf ID
	nextShelf int
	watchers  map[*watcher]struct{}
}

type shelf struct {
	msg      *libraryv1.Shelf
	books    map[string]*libraryv1.Book // by book ID
	nextBook int
}

// NewServer returns a server seeded with two shelves and four books:
//
//	shelves/1  Science fiction   books/1 Dune, books/2 The Left Hand of Darkness
//	shelves/2  Computer science  books/1 The Go Programming Language,
//	                             books/2 Designing Data-Intensive Applications (draft)
func NewServer() *Server {
	s := &Server{
		now:      time.Now,
		shelves:  map[string]*shelf{},
		watchers: map[*watcher]struct{}{},
	}
	s.seed()
	return s
}

// Register registers the service on g (usually a *grpc.Server).
func (s *Server) Register(g grpc.ServiceRegistrar) {
	libraryv1.RegisterLibraryServiceServer(g, s)
}

func (s *Server) seed() {
	at := timestamppb.New(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
	for _, sh := range []struct {
		theme string
		books []*libraryv1.Book
	}{
		{"Science fiction", []*libraryv1.Book{
			{Title: "Dune", Author: "Frank Herbert", PageCount: 412, Tags: []string{"classic", "desert"}, Labels: map[string]string{"language": "en"}, State: libraryv1.BookState_BOOK_STATE_PUBLISHED},
			{Title: "The Left Hand of Darkness", Author: "Ursula K. Le Guin", PageCount: 304, Tags: []string{"classic"}, Labels: map[string]string{"language": "en"}, State: libraryv1.BookState_BOOK_STATE_PUBLISHED},
		}},
		{"Computer science", []*libraryv1.Book{
			{Title: "The Go Programming Language", Author: "Alan A. A. Donovan", PageCount: 380, Tags: []string{"go", "programming"}, Labels: map[string]string{"language": "en"}, State: libraryv1.BookState_BOOK_STATE_PUBLISHED},
			{Title: "Designing Data-Intensive Applications", Author: "Martin Kleppmann", PageCount: 616, Tags: []string{"databases", "distributed-systems"}, State: libraryv1.BookState_BOOK_STATE_DRAFT},
		}},
	} {
		s.nextShelf++
		id := strconv.Itoa(s.nextShelf)
		rec := &shelf{
			msg:   &libraryv1.Shelf{Name: "shelves/" + id, Theme: sh.theme, CreateTime: at},
			books: map[string]*libraryv1.Book{},
		}
		for _, b := range sh.books {
			rec.nextBook++
			bid := strconv.Itoa(rec.nextBook)
			b.Name = rec.msg.GetName() + "/books/" + bid
			b.CreateTime, b.UpdateTime = at, at
			rec.books[bid] = b
		}
		s.shelves[id] = rec
	}
}

// CreateShelf creates a shelf with a server-assigned name.
func (s *Server) CreateShelf(_ context.Context, req *libraryv1.CreateShelfRequest) (*libraryv1.Shelf, error) {
	if req.GetShelf() == nil {
		return nil, badRequest("shelf", "required")
	}
	if strings.TrimSpace(req.GetShelf().GetTheme()) == "" {
		return nil, badRequest("shelf.theme", "required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextShelf++
	id := strconv.Itoa(s.nextShelf)
	for s.shelves[id] != nil {
		s.nextShelf++
		id = strconv.Itoa(s.nextShelf)
	}
	msg := &libraryv1.Shelf{
		Name:       "shelves/" + id,
		Theme:      req.GetShelf().GetTheme(),
		CreateTime: timestamppb.New(s.now()),
	}
	s.shelves[id] = &shelf{msg: msg, books: map[string]*libraryv1.Book{}}
	return proto.CloneOf(msg), nil
}

// GetShelf returns a shelf.
func (s *Server) GetShelf(_ context.Context, req *libraryv1.GetShelfRequest) (*libraryv1.Shelf, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, err := s.shelfLocked("name", req.GetName())
	if err != nil {
		return nil, err
	}
	return proto.CloneOf(sh.msg), nil
}

// ListShelves lists shelves in ID order.
func (s *Server) ListShelves(_ context.Context, req *libraryv1.ListShelvesRequest) (*libraryv1.ListShelvesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]*libraryv1.Shelf, 0, len(s.shelves))
	for _, sh := range s.shelves {
		all = append(all, sh.msg)
	}
	page, next, err := paginate(all, (*libraryv1.Shelf).GetName, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &libraryv1.ListShelvesResponse{Shelves: cloneAll(page), NextPageToken: next}, nil
}

// DeleteShelf deletes a shelf and its books. Watchers of the shelf get a
// DELETED event per book and then the end of their stream.
func (s *Server) DeleteShelf(_ context.Context, req *libraryv1.DeleteShelfRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, err := s.shelfLocked("name", req.GetName())
	if err != nil {
		return nil, err
	}
	for _, b := range sortedBooks(sh) {
		s.publishLocked(sh.msg.GetName(), libraryv1.BookEvent_TYPE_DELETED, b)
	}
	s.closeWatchersLocked(sh.msg.GetName())
	delete(s.shelves, shelfID(sh.msg.GetName()))
	return &emptypb.Empty{}, nil
}

// CreateBook creates a DRAFT book on a shelf.
func (s *Server) CreateBook(_ context.Context, req *libraryv1.CreateBookRequest) (*libraryv1.Book, error) {
	b := req.GetBook()
	switch {
	case b == nil:
		return nil, badRequest("book", "required")
	case strings.TrimSpace(b.GetTitle()) == "":
		return nil, badRequest("book.title", "required")
	case b.GetPageCount() < 0:
		return nil, badRequest("book.page_count", "must not be negative, got %d", b.GetPageCount())
	case req.GetBookId() != "" && !idPattern.MatchString(req.GetBookId()):
		return nil, badRequest("book_id", "must match %s, got %q", idPattern, req.GetBookId())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, err := s.shelfLocked("parent", req.GetParent())
	if err != nil {
		return nil, err
	}
	id := req.GetBookId()
	if id == "" {
		for id == "" || sh.books[id] != nil {
			sh.nextBook++
			id = strconv.Itoa(sh.nextBook)
		}
	} else if sh.books[id] != nil {
		return nil, alreadyExists(bookType, sh.msg.GetName()+"/books/"+id)
	}
	now := timestamppb.New(s.now())
	book := &libraryv1.Book{
		Name:       sh.msg.GetName() + "/books/" + id,
		Title:      b.GetTitle(),
		Author:     b.GetAuthor(),
		PageCount:  b.GetPageCount(),
		Tags:       slices.Clone(b.GetTags()),
		Labels:     maps.Clone(b.GetLabels()),
		State:      libraryv1.BookState_BOOK_STATE_DRAFT,
		CreateTime: now,
		UpdateTime: now,
	}
	sh.books[id] = book
	s.publishLocked(sh.msg.GetName(), libraryv1.BookEvent_TYPE_CREATED, book)
	return proto.CloneOf(book), nil
}

// GetBook returns a book.
func (s *Server) GetBook(_ context.Context, req *libraryv1.GetBookRequest) (*libraryv1.Book, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, b, err := s.bookLocked("name", req.GetName())
	if err != nil {
		return nil, err
	}
	return proto.CloneOf(b), nil
}

// ListBooks lists the books on a shelf in ID order, optionally filtered.
func (s *Server) ListBooks(_ context.Context, req *libraryv1.ListBooksRequest) (*libraryv1.ListBooksResponse, error) {
	match, err := parseFilter(req.GetFilter())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, err := s.shelfLocked("parent", req.GetParent())
	if err != nil {
		return nil, err
	}
	var books []*libraryv1.Book
	for _, b := range sh.books {
		if match(b) {
			books = append(books, b)
		}
	}
	page, next, err := paginate(books, (*libraryv1.Book).GetName, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &libraryv1.ListBooksResponse{Books: cloneAll(page), NextPageToken: next}, nil
}

// updatable maps each update_mask path to the function that copies it.
var updatable = map[string]func(dst, src *libraryv1.Book){
	"title":      func(dst, src *libraryv1.Book) { dst.Title = src.GetTitle() },
	"author":     func(dst, src *libraryv1.Book) { dst.Author = src.GetAuthor() },
	"page_count": func(dst, src *libraryv1.Book) { dst.PageCount = src.GetPageCount() },
	"tags":       func(dst, src *libraryv1.Book) { dst.Tags = slices.Clone(src.GetTags()) },
	"labels":     func(dst, src *libraryv1.Book) { dst.Labels = maps.Clone(src.GetLabels()) },
}

// UpdateBook updates the fields named in update_mask; an empty mask or "*"
// updates every updatable field.
func (s *Server) UpdateBook(_ context.Context, req *libraryv1.UpdateBookRequest) (*libraryv1.Book, error) {
	src := req.GetBook()
	if src == nil {
		return nil, badRequest("book", "required")
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 || slices.Equal(paths, []string{"*"}) {
		paths = slices.Sorted(maps.Keys(updatable))
	}
	for _, p := range paths {
		if updatable[p] == nil {
			return nil, badRequest("update_mask", "cannot update %q (updatable: %s)", p,
				strings.Join(slices.Sorted(maps.Keys(updatable)), ", "))
		}
	}
	if slices.Contains(paths, "title") && strings.TrimSpace(src.GetTitle()) == "" {
		return nil, badRequest("book.title", "required")
	}
	if src.GetPageCount() < 0 {
		return nil, badRequest("book.page_count", "must not be negative, got %d", src.GetPageCount())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, old, err := s.bookLocked("book.name", src.GetName())
	if err != nil {
		return nil, err
	}
	b := proto.CloneOf(old)
	for _, p := range paths {
		updatable[p](b, src)
	}
	b.UpdateTime = timestamppb.New(s.now())
	sh.books[bookID(b.GetName())] = b
	s.publishLocked(sh.msg.GetName(), libraryv1.BookEvent_TYPE_UPDATED, b)
	return proto.CloneOf(b), nil
}

// PublishBook marks a book PUBLISHED. Publishing a published book returns
// it unchanged.
func (s *Server) PublishBook(_ context.Context, req *libraryv1.PublishBookRequest) (*libraryv1.Book, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, old, err := s.bookLocked("name", req.GetName())
	if err != nil {
		return nil, err
	}
	if old.GetState() == libraryv1.BookState_BOOK_STATE_PUBLISHED {
		return proto.CloneOf(old), nil
	}
	b := proto.CloneOf(old)
	b.State = libraryv1.BookState_BOOK_STATE_PUBLISHED
	b.UpdateTime = timestamppb.New(s.now())
	sh.books[bookID(b.GetName())] = b
	s.publishLocked(sh.msg.GetName(), libraryv1.BookEvent_TYPE_UPDATED, b)
	return proto.CloneOf(b), nil
}

// MoveBook moves a book to another shelf, keeping its ID.
func (s *Server) MoveBook(_ context.Context, req *libraryv1.MoveBookRequest) (*libraryv1.Book, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	from, old, err := s.bookLocked("name", req.GetName())
	if err != nil {
		return nil, err
	}
	to, err := s.shelfLocked("other_shelf", req.GetOtherShelf())
	if err != nil {
		return nil, err
	}
	id := bookID(old.GetName())
	if to == from {
		return proto.CloneOf(old), nil
	}
	if to.books[id] != nil {
		return nil, alreadyExists(bookType, to.msg.GetName()+"/books/"+id)
	}
	b := proto.CloneOf(old)
	b.Name = to.msg.GetName() + "/books/" + id
	b.UpdateTime = timestamppb.New(s.now())
	delete(from.books, id)
	to.books[id] = b
	s.publishLocked(from.msg.GetName(), libraryv1.BookEvent_TYPE_DELETED, old)
	s.publishLocked(to.msg.GetName(), libraryv1.BookEvent_TYPE_CREATED, b)
	return proto.CloneOf(b), nil
}

// shelfLocked returns the shelf called name; field names the request field
// for errors. s.mu must be held.
func (s *Server) shelfLocked(field, name string) (*shelf, error) {
	id, ok := strings.CutPrefix(name, "shelves/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return nil, badRequest(field, "want a shelf name like \"shelves/1\", got %q", name)
	}
	sh := s.shelves[id]
	if sh == nil {
		return nil, notFound(shelfType, name)
	}
	return sh, nil
}

// bookLocked returns the book called name and its shelf. s.mu must be held.
func (s *Server) bookLocked(field, name string) (*shelf, *libraryv1.Book, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "shelves" || parts[1] == "" || parts[2] != "books" || parts[3] == "" {
		return nil, nil, badRequest(field, "want a book name like \"shelves/1/books/2\", got %q", name)
	}
	sh := s.shelves[parts[1]]
	if sh == nil {
		return nil, nil, notFound(shelfType, "shelves/"+parts[1])
	}
	b := sh.books[parts[3]]
	if b == nil {
		return nil, nil, notFound(bookType, name)
	}
	return sh, b, nil
}

func shelfID(name string) string { return strings.TrimPrefix(name, "shelves/") }

func bookID(name string) string { return name[strings.LastIndexByte(name, '/')+1:] }

// compareNames orders resource names by their last segment, numerically when
// both are numbers (so books/2 comes before books/10).
func compareNames(a, b string) int {
	x, y := bookID(a), bookID(b)
	if isDigits(x) && isDigits(y) {
		if c := cmp.Compare(len(x), len(y)); c != 0 {
			return c
		}
	}
	return cmp.Or(strings.Compare(x, y), strings.Compare(a, b))
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// paginate sorts items by name and returns the page after pageToken (the
// base64 of the last name of the previous page).
func paginate[T any](items []T, name func(T) string, pageSize int32, pageToken string) ([]T, string, error) {
	switch {
	case pageSize < 0:
		return nil, "", badRequest("page_size", "must not be negative, got %d", pageSize)
	case pageSize == 0:
		pageSize = defaultPageSize
	case pageSize > maxPageSize:
		pageSize = maxPageSize
	}
	slices.SortFunc(items, func(a, b T) int { return compareNames(name(a), name(b)) })
	if pageToken != "" {
		last, err := base64.RawURLEncoding.DecodeString(pageToken)
		if err != nil || len(last) == 0 {
			return nil, "", badRequest("page_token", "invalid page token %q", pageToken)
		}
		i, _ := slices.BinarySearchFunc(items, string(last), func(it T, last string) int {
			if compareNames(name(it), last) <= 0 {
				return -1
			}
			return 1
		})
		items = items[i:]
	}
	if len(items) <= int(pageSize) {
		return items, "", nil
	}
	page := items[:pageSize]
	return page, base64.RawURLEncoding.EncodeToString([]byte(name(page[len(page)-1]))), nil
}

// parseFilter parses ListBooks' filter: "author=<name>", "state=DRAFT",
// "tag=<tag>", or a word matched against the title.
func parseFilter(filter string) (func(*libraryv1.Book) bool, error) {
	filter = strings.TrimSpace(filter)
	if filter == "" {
		return func(*libraryv1.Book) bool { return true }, nil
	}
	key, value, ok := strings.Cut(filter, "=")
	if !ok {
		word := strings.ToLower(filter)
		return func(b *libraryv1.Book) bool { return strings.Contains(strings.ToLower(b.GetTitle()), word) }, nil
	}
	key, value = strings.TrimSpace(key), strings.Trim(strings.TrimSpace(value), `"`)
	switch key {
	case "author":
		return func(b *libraryv1.Book) bool { return strings.EqualFold(b.GetAuthor(), value) }, nil
	case "tag":
		return func(b *libraryv1.Book) bool { return slices.Contains(b.GetTags(), value) }, nil
	case "state":
		st, ok := libraryv1.BookState_value["BOOK_STATE_"+strings.ToUpper(value)]
		if !ok || st == 0 {
			return nil, badRequest("filter", "unknown state %q (want DRAFT or PUBLISHED)", value)
		}
		return func(b *libraryv1.Book) bool { return b.GetState() == libraryv1.BookState(st) }, nil
	}
	return nil, badRequest("filter", "unknown key %q (want author, state or tag)", key)
}

func sortedBooks(sh *shelf) []*libraryv1.Book {
	books := slices.Collect(maps.Values(sh.books))
	slices.SortFunc(books, func(a, b *libraryv1.Book) int { return compareNames(a.GetName(), b.GetName()) })
	return books
}

func cloneAll[T proto.Message](msgs []T) []T {
	out := make([]T, len(msgs))
	for i, m := range msgs {
		out[i] = proto.CloneOf(m)
	}
	return out
}

var _ libraryv1.LibraryServiceServer = (*Server)(nil)
