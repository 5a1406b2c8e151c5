package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

// maxBodyBytes bounds a sign-in body.
const maxBodyBytes = 64 << 10

// usageWindows are the windows api/me/usage accepts.
var usageWindows = map[string]time.Duration{
	"1h":  time.Hour,
	"24h": 24 * time.Hour,
	"7d":  7 * 24 * time.Hour,
	"30d": 30 * 24 * time.Hour,
}

// serveAPI routes one JSON API request; p is the path after "api".
func (h *handler) serveAPI(w http.ResponseWriter, r *http.Request, p string) {
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case p == "/config":
		if allow(w, r, http.MethodGet) {
			h.config(w)
		}
	case p == "/catalog":
		if allow(w, r, http.MethodGet) {
			c := h.o.Source.Catalog()
			if c == nil {
				c = &Catalog{APIs: []API{}}
			}
			writeJSON(w, http.StatusOK, c)
		}
	case strings.HasPrefix(p, "/openapi/") && !strings.Contains(p[len("/openapi/"):], "/") && len(p) > len("/openapi/"):
		if allow(w, r, http.MethodGet) {
			h.openAPI(w, p[len("/openapi/"):])
		}
	case p == "/signin":
		if allow(w, r, http.MethodPost) {
			h.signIn(w, r)
		}
	case p == "/me":
		if allow(w, r, http.MethodGet) {
			if c := h.consumer(w, r); c != nil {
				writeJSON(w, http.StatusOK, c)
			}
		}
	case p == "/me/usage":
		if allow(w, r, http.MethodGet) {
			h.usage(w, r)
		}
	case p == "/me/keys":
		if allow(w, r, http.MethodPost) {
			h.createKey(w, r)
		}
	case strings.HasPrefix(p, "/me/keys/") && !strings.Contains(p[len("/me/keys/"):], "/") && len(p) > len("/me/keys/"):
		if allow(w, r, http.MethodDelete) {
			h.revokeKey(w, r, p[len("/me/keys/"):])
		}
	case p == "/analytics":
		if allow(w, r, http.MethodGet) {
			h.analytics(w, r)
		}
	default:
		writeError(w, http.StatusNotFound, "no portal API at "+r.URL.Path)
	}
}

// allow answers 405 and returns false unless r's method is method (or
// HEAD for GET).
func allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	if method == http.MethodGet {
		w.Header().Set("Allow", "GET, HEAD")
	} else {
		w.Header().Set("Allow", method)
	}
	writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+method)
	return false
}

func (h *handler) config(w http.ResponseWriter) {
	title := h.o.Title
	if title == "" {
		if c := h.o.Source.Catalog(); c != nil {
			title = c.Title
		}
	}
	if title == "" {
		title = "Developer portal"
	}
	writeJSON(w, http.StatusOK, struct {
		Title       string `json:"title"`
		SelfService bool   `json:"self_service"`
	}{title, h.o.SelfService})
}

func (h *handler) openAPI(w http.ResponseWriter, service string) {
	doc, err := h.o.Source.OpenAPI(service)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
}

func (h *handler) signIn(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return
		}
	}
	var cred Credential
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cred); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "bad JSON body: more than one JSON value")
		return
	}
	if (cred.APIKey == "") == (cred.JWT == "") {
		writeError(w, http.StatusBadRequest, `give one of "api_key" and "jwt"`)
		return
	}
	c, err := h.o.Source.SignIn(r.Context(), cred)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// consumer checks the request's credential and returns its consumer, or
// answers 401 and returns nil.
func (h *handler) consumer(w http.ResponseWriter, r *http.Request) *Consumer {
	var cred Credential
	if k := r.Header.Get("X-API-Key"); k != "" {
		cred.APIKey = k
	} else if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok &&
		strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) != "" {
		cred.JWT = strings.TrimSpace(tok)
	}
	if cred.APIKey == "" && cred.JWT == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portal"`)
		writeError(w, http.StatusUnauthorized, "sign in: send an API key in X-API-Key or a JWT as Authorization: Bearer <token>")
		return nil
	}
	c, err := h.o.Source.SignIn(r.Context(), cred)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portal"`)
		writeError(w, http.StatusUnauthorized, err.Error())
		return nil
	}
	return c
}

func (h *handler) usage(w http.ResponseWriter, r *http.Request) {
	c := h.consumer(w, r)
	if c == nil {
		return
	}
	window := r.URL.Query().Get("window")
	if window == "" {
		window = "24h"
	}
	d, ok := usageWindows[window]
	if !ok {
		writeError(w, http.StatusBadRequest, "window must be one of 1h, 24h, 7d, 30d")
		return
	}
	to := time.Now().UTC().Truncate(time.Second)
	u, err := h.o.Source.Usage(r.Context(), c.Name, to.Add(-d), to)
	if err != nil {
		h.sourceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (h *handler) createKey(w http.ResponseWriter, r *http.Request) {
	if !h.o.SelfService {
		writeError(w, http.StatusForbidden, "self-service key creation is off")
		return
	}
	c := h.consumer(w, r)
	if c == nil {
		return
	}
	k, secret, err := h.o.Source.CreateKey(r.Context(), c.Name)
	if err != nil {
		h.sourceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		Key    Key    `json:"key"`
		Secret string `json:"secret"`
	}{k, secret})
}

func (h *handler) revokeKey(w http.ResponseWriter, r *http.Request, id string) {
	if !h.o.SelfService {
		writeError(w, http.StatusForbidden, "self-service key revocation is off")
		return
	}
	c := h.consumer(w, r)
	if c == nil {
		return
	}
	if err := h.o.Source.RevokeKey(r.Context(), c.Name, id); err != nil {
		h.sourceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"revoked": id})
}

func (h *handler) analytics(w http.ResponseWriter, r *http.Request) {
	if !h.o.Source.AdminAuthorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portal admin"`)
		writeError(w, http.StatusUnauthorized, "admin token required: send Authorization: Bearer <admin token>")
		return
	}
	res, err := h.o.Source.Analytics(r.Context(), r.URL.Query())
	if err != nil {
		h.sourceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// sourceError answers an error from the Source: ErrInvalid → 400,
// ErrForbidden → 403, ErrNotFound → 404, each with err.Error(); a
// canceled request → 499 (nobody reads it); anything else → 500 with an
// error ID, logged.
func (h *handler) sourceError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrForbidden):
		writeError(w, http.StatusForbidden, err.Error())
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		writeError(w, 499, "request canceled")
	default:
		id := errorID()
		h.log.ErrorContext(r.Context(), "portal request failed",
			"path", r.URL.Path, "error_id", id, "error", err)
		w.Header().Set("Rosetta-Error-Id", id)
		writeError(w, http.StatusInternalServerError, "internal error (error ID "+id+")")
	}
}

// errorID returns a fresh random ID for a 5xx answer.
func errorID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writeJSON writes v as the JSON body with status. HTML characters are
// not escaped: the answers are application/json with nosniff, never HTML.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		writeError(w, http.StatusInternalServerError, "encode response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// writeError writes {"error": msg} with status.
func writeError(w http.ResponseWriter, status int, msg string) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]string{"error": msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Encoding")
	h.Del("ETag")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
