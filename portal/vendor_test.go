package portal_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVendoredMatchesLock checks that assets/vendor holds what
// web/package-lock.json pins: every file listed in assets/vendor/VERSIONS
// (written by web/vendor.sh) has the locked version of its package and
// the recorded sha256, every vendored file is listed, every dependency of
// web/package.json is vendored, and the scripts' banners name the locked
// versions. A lock bump without running web/vendor.sh fails here.
func TestVendoredMatchesLock(t *testing.T) {
	t.Parallel()
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	readJSON(t, "web/package-lock.json", &lock)
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	readJSON(t, "web/package.json", &pkg)
	locked := func(name string) string {
		return lock.Packages["node_modules/"+name].Version
	}
	for name, want := range pkg.Dependencies {
		if got := locked(name); got != want {
			t.Errorf("package-lock.json pins %s %q; package.json asks for %q: run npm install in portal/web", name, got, want)
		}
	}

	manifest, err := os.ReadFile("assets/vendor/VERSIONS")
	if err != nil {
		t.Fatalf("read the manifest: %v (run portal/web/vendor.sh)", err)
	}
	listed := map[string]bool{}
	vendored := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(manifest))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			t.Errorf("VERSIONS: bad line %q; want FILE PACKAGE VERSION SHA256", line)
			continue
		}
		file, name, version, sum := f[0], f[1], f[2], f[3]
		listed[file] = true
		vendored[name] = true
		if want := locked(name); version != want {
			t.Errorf("%s: vendored from %s %s; package-lock.json pins %s: run portal/web/vendor.sh", file, name, version, want)
		}
		data, err := os.ReadFile(filepath.Join("assets/vendor", file))
		if err != nil {
			t.Errorf("%s: %v (run portal/web/vendor.sh)", file, err)
			continue
		}
		if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: sha256 %x; VERSIONS records %s: the file changed since portal/web/vendor.sh wrote it", file, got, sum)
		}
	}
	for name := range pkg.Dependencies {
		if !vendored[name] {
			t.Errorf("package.json depends on %s, but nothing of it is vendored: update portal/web/vendor.sh", name)
		}
	}
	entries, err := os.ReadDir("assets/vendor")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "VERSIONS" && !listed[e.Name()] {
			t.Errorf("assets/vendor/%s is not in VERSIONS: vendor it with portal/web/vendor.sh", e.Name())
		}
	}

	// The banners, as a second check that does not trust the manifest.
	for file, banner := range map[string]string{
		"swagger-ui-bundle.js": `PACKAGE_VERSION:"` + locked("swagger-ui-dist") + `"`,
		"uPlot.iife.min.js":    "(v" + locked("uplot") + ")",
	} {
		data, err := os.ReadFile(filepath.Join("assets/vendor", file))
		if err == nil && !bytes.Contains(data, []byte(banner)) {
			t.Errorf("%s does not contain %s: it is not the locked version", file, banner)
		}
	}
}

func readJSON(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}
