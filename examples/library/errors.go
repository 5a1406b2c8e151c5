package library

import (
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// Resource types used in google.rpc.ResourceInfo details.
const (
	shelfType = "rosetta.examples.library.v1.Shelf"
	bookType  = "rosetta.examples.library.v1.Book"
)

func withDetails(st *status.Status, details ...protoadapt.MessageV1) error {
	if withd, err := st.WithDetails(details...); err == nil {
		st = withd
	}
	return st.Err()
}

// notFound is NotFound with a ResourceInfo detail.
func notFound(resourceType, name string) error {
	msg := fmt.Sprintf("%s %q not found", kindOf(resourceType), name)
	return withDetails(status.New(codes.NotFound, msg), &errdetails.ResourceInfo{
		ResourceType: resourceType,
		ResourceName: name,
		Description:  msg,
	})
}

// alreadyExists is AlreadyExists with a ResourceInfo detail.
func alreadyExists(resourceType, name string) error {
	msg := fmt.Sprintf("%s %q already exists", kindOf(resourceType), name)
	return withDetails(status.New(codes.AlreadyExists, msg), &errdetails.ResourceInfo{
		ResourceType: resourceType,
		ResourceName: name,
		Description:  msg,
	})
}

// badRequest is InvalidArgument with a BadRequest detail naming the request
// field at fault.
func badRequest(field, format string, args ...any) error {
	desc := fmt.Sprintf(format, args...)
	return withDetails(status.New(codes.InvalidArgument, field+": "+desc), &errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: desc}},
	})
}

func kindOf(resourceType string) string {
	switch resourceType {
	case shelfType:
		return "shelf"
	case bookType:
		return "book"
	}
	return resourceType
}
