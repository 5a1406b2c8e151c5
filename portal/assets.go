package portal

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// assets are the UI: index.html, the scripts and styles, and the
// vendored libraries with their licenses (assets/vendor, written by
// web/vendor.sh).
//
//go:embed assets
var assets embed.FS

// asset is one embedded file ready to serve.
type asset struct {
	name  string // for the Content-Type
	data  []byte
	ctype string
	etag  string

	gzOnce sync.Once
	gz     []byte // gzip of data, nil when it does not pay
}

// loadAssets reads every embedded file once.
var loadAssets = sync.OnceValue(func() map[string]*asset {
	m := map[string]*asset{}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "assets/")
		sum := sha256.Sum256(data)
		ctype := mime.TypeByExtension(path.Ext(name))
		if ctype == "" {
			ctype = "text/plain; charset=utf-8" // LICENSE, NOTICE, VERSIONS
		}
		m[name] = &asset{
			name:  name,
			data:  data,
			ctype: ctype,
			etag:  `"` + hex.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		panic("portal: read embedded assets: " + err.Error()) // cannot happen with embed.FS
	}
	return m
})

// compressed returns the gzip of the asset, computed on first use; nil
// for small files.
func (a *asset) compressed() []byte {
	a.gzOnce.Do(func() {
		if len(a.data) < 1024 {
			return
		}
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		_, _ = zw.Write(a.data)
		_ = zw.Close()
		if b.Len() < len(a.data)*9/10 {
			a.gz = b.Bytes()
		}
	})
	return a.gz
}

// serveAsset serves the UI file name ("" is index.html) with an ETag and
// "Cache-Control: no-cache", so browsers revalidate (a 304 when the file
// is unchanged) and pick up a new binary's files at once. Clients that
// accept gzip get the compressed bytes.
func serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	if name == "" {
		name = "index.html"
	}
	a := loadAssets()[name]
	if a == nil {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use GET")
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept-Encoding")
	data, etag := a.data, a.etag
	if gz := a.compressed(); gz != nil && acceptsGzip(r) {
		data = gz
		etag = strings.TrimSuffix(etag, `"`) + `-gz"`
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(data))
}

// acceptsGzip reports whether the request's Accept-Encoding lists gzip
// with a non-zero weight.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
