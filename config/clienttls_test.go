package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestClientTLSConfigErrors: what an operator sees for a CA or client
// certificate that cannot be used.
func TestClientTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		c    ClientTLS
		want string
	}{
		{ClientTLS{CA: missing}, "read redis CA: open " + missing + ": no such file or directory"},
		{ClientTLS{CA: notPEM}, "redis CA " + notPEM + ": no PEM certificates found"},
		{ClientTLS{Cert: missing, Key: missing}, "load redis client certificate: open " + missing + ": no such file or directory"},
	} {
		_, err := tc.c.TLSConfig("redis")
		if err == nil || err.Error() != tc.want {
			t.Errorf("%+v: got %v; want %s", tc.c, err, tc.want)
		}
	}
	tc, err := (&ClientTLS{ServerName: "redis.internal"}).TLSConfig("redis")
	if err != nil || tc.ServerName != "redis.internal" || tc.MinVersion == 0 || tc.RootCAs != nil {
		t.Errorf("system roots: %+v %v", tc, err)
	}
}
