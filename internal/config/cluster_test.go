package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestClusterFlags(t *testing.T) {
	s3 := []string{"--storage-url", "s3://AK:SK@bucket.us-east-1/cache"}
	c, err := Parse(append(s3, "--peer-address", ":8081", "--advertise-url", "http://10.0.0.5:8081"),
		env(map[string]string{"HTTPMIRROR_PEER_SECRET": "from-env", "HTTPMIRROR_LEASE_DURATION": "10s"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.ClusterEnabled() || c.PeerSecret != "from-env" || c.LeaseDuration != 10*time.Second || c.AdvertiseURL != "http://10.0.0.5:8081" {
		t.Errorf("cluster flags: %+v", c)
	}
	if c, _ := Parse(s3, env(nil), io.Discard); c.ClusterEnabled() || c.LeaseDuration != 30*time.Second {
		t.Errorf("without --peer-address: enabled %v, lease %v; want off, 30s", c.ClusterEnabled(), c.LeaseDuration)
	}

	peer := []string{"--peer-address", ":8081", "--advertise-url", "http://10.0.0.5:8081"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append([]string{"--storage-url", "file:///tmp/c", "--peer-secret", "x"}, peer...), "s3://"},
		{append(append(s3, peer...), "--master", "http://127.0.0.1:1", "--peer-secret", "x"), "CIDN"},
		{append(s3, "--peer-address", ":8081", "--peer-secret", "x"), "--advertise-url"},
		{append(s3, peer...), "exactly one"},
		{append(append(s3, peer...), "--peer-secret", "x", "--peer-secret-file", "/f"), "exactly one"},
		{append(append(s3, peer...), "--peer-secret", "x", "--lease-duration", "10ms"), "--lease-duration"},
		{append(s3, "--advertise-url", "http://10.0.0.5:8081"), "need --peer-address"},
	} {
		if _, err := Parse(tc.args, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %v; want one mentioning %q", tc.args, err, tc.want)
		}
	}
}
