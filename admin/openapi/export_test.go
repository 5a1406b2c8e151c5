package openapi

// Helpers of the internal tests that the external ones (package
// openapi_test) use.
var (
	// CompileSet is compileSet.
	CompileSet = compileSet
	// WriteSet is writeSet.
	WriteSet = writeSet
	// ValidateDocument is validateDocument.
	ValidateDocument = validateDocument
	// CheckPaths is checkPaths.
	CheckPaths = checkPaths
)
