package s3_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror/storage/s3"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		name string
		url  string
		want s3.Config // StaleUploadAge is always the default
	}{
		{
			name: "AWS",
			url:  "s3://AKIAEXAMPLE:wJalr%2FXUtnFEMI@mybucket.us-east-1/mirror",
			want: s3.Config{Bucket: "mybucket", Region: "us-east-1", RootDir: "mirror", AccessKey: "AKIAEXAMPLE", SecretKey: "wJalr/XUtnFEMI"},
		},
		{
			name: "MinIO path style",
			url:  "s3://minio:minio123@cache.us-east-1/?regionendpoint=http://minio.internal:9000&forcepathstyle=true",
			want: s3.Config{Bucket: "cache", Region: "us-east-1", Endpoint: "http://minio.internal:9000", ForcePathStyle: true, AccessKey: "minio", SecretKey: "minio123"},
		},
		{
			name: "sign endpoint and nested root",
			url:  "s3://k:s@b01.auto/a/b/c/?regionendpoint=https://r2.internal&signendpoint=https://files.example.com/",
			want: s3.Config{Bucket: "b01", Region: "auto", RootDir: "a/b/c", Endpoint: "https://r2.internal", SignEndpoint: "https://files.example.com", AccessKey: "k", SecretKey: "s"},
		},
		{
			name: "endpoint without scheme is https",
			url:  "s3://k:s@bkt.region/?regionendpoint=store.example.com:9000",
			want: s3.Config{Bucket: "bkt", Region: "region", Endpoint: "https://store.example.com:9000", AccessKey: "k", SecretKey: "s"},
		},
		{
			name: "secure=false makes scheme-less endpoints http",
			url:  "s3://k:s@bkt.region/?regionendpoint=127.0.0.1:9000&signendpoint=localhost:9000&secure=false",
			want: s3.Config{Bucket: "bkt", Region: "region", Endpoint: "http://127.0.0.1:9000", SignEndpoint: "http://localhost:9000", AccessKey: "k", SecretKey: "s"},
		},
		{
			name: "secure=false leaves an explicit scheme alone",
			url:  "s3://k:s@bkt.region/?regionendpoint=https://store:9000&secure=false",
			want: s3.Config{Bucket: "bkt", Region: "region", Endpoint: "https://store:9000", AccessKey: "k", SecretKey: "s"},
		},
		{
			name: "no region with an endpoint",
			url:  "s3://k:s@bkt/?regionendpoint=http://127.0.0.1:9000",
			want: s3.Config{Bucket: "bkt", Endpoint: "http://127.0.0.1:9000", AccessKey: "k", SecretKey: "s"},
		},
		{
			name: "credentials from the environment",
			url:  "s3://bkt.eu-west-1",
			want: s3.Config{Bucket: "bkt", Region: "eu-west-1"},
		},
		{
			name: "rootdirectory parameter wins over the path",
			url:  "s3://k:s@bkt.eu-west-1/ignored?rootdirectory=/cache/",
			want: s3.Config{Bucket: "bkt", Region: "eu-west-1", RootDir: "cache", AccessKey: "k", SecretKey: "s"},
		},
		{
			name: "storage options",
			url: "s3://k:s@bkt.eu-west-1/?storageclass=STANDARD_IA&sessiontoken=tok&chunksize=33554432&encrypt=true&keyid=kms-1" +
				"&objectacl=private&useragent=mirror%2F1&usedualstack=true&accelerate=1&skipverify=true&loglevel=debug",
			want: s3.Config{
				Bucket: "bkt", Region: "eu-west-1", AccessKey: "k", SecretKey: "s", SessionToken: "tok",
				StorageClass: "STANDARD_IA", ChunkSize: 32 << 20, Encrypt: true, KMSKeyID: "kms-1",
				ObjectACL: "private", UserAgent: "mirror/1", DualStack: true, Accelerate: true, SkipVerify: true,
			},
		},
		{
			name: "storageclass NONE sends none",
			url:  "s3://k:s@bkt.r/?storageclass=NONE",
			want: s3.Config{Bucket: "bkt", Region: "r", AccessKey: "k", SecretKey: "s"},
		},
		{
			name: "a chunk size under S3's minimum is raised",
			url:  "s3://k:s@bkt.r/?chunksize=1048576",
			want: s3.Config{Bucket: "bkt", Region: "r", AccessKey: "k", SecretKey: "s", ChunkSize: s3.MinChunkSize},
		},
		{
			name: "a chunk size over S3's maximum is lowered",
			url:  "s3://k:s@bkt.r/?chunksize=10737418240",
			want: s3.Config{Bucket: "bkt", Region: "r", AccessKey: "k", SecretKey: "s", ChunkSize: s3.MaxChunkSize},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s3.ParseURL(tc.url)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			tc.want.StaleUploadAge = s3.DefaultStaleUploadAge
			if got != tc.want {
				t.Errorf("ParseURL(%q)\n got %+v\nwant %+v", tc.url, got, tc.want)
			}
		})
	}
}

// secret and token appear in every bad URL below: no error may repeat them.
const (
	secret = "S3CRETv4lue"
	token  = "T0KENv4lue"
)

func TestParseURLRefuses(t *testing.T) {
	tests := map[string]string{
		"not s3":                   "https://AK:" + secret + "@bkt.r/",
		"bad escape in secret":     "s3://AK:" + secret + "%zz@bkt.r/",
		"bad escape in host":       "s3://AK:" + secret + "@bkt%zz.r/",
		"unescaped slash":          "s3://AK:" + secret + "/x@bkt.r/",
		"opaque":                   "s3:AK:" + secret + "@bkt.r",
		"no bucket":                "s3://AK:" + secret + "@/root",
		"bucket too short":         "s3://AK:" + secret + "@ab.r/",
		"bucket with uppercase":    "s3://AK:" + secret + "@Bucket.r/",
		"port on the bucket":       "s3://AK:" + secret + "@bkt.r:9000/",
		"no region, no endpoint":   "s3://AK:" + secret + "@bkt/",
		"bad region":               "s3://AK:" + secret + "@bkt.us%20east/",
		"secret without key":       "s3://:" + secret + "@bkt.r/",
		"key without secret":       "s3://AK@bkt.r/",
		"token without key":        "s3://bkt.r/?sessiontoken=" + token,
		"unknown parameter":        "s3://AK:" + secret + "@bkt.r/?regionEndpoint=http://x&sessiontoken=" + token,
		"bad bool":                 "s3://AK:" + secret + "@bkt.r/?forcepathstyle=yes&sessiontoken=" + token,
		"bad secure":               "s3://AK:" + secret + "@bkt.r/?secure=maybe",
		"bad chunk size":           "s3://AK:" + secret + "@bkt.r/?chunksize=16MiB&sessiontoken=" + token,
		"negative chunk size":      "s3://AK:" + secret + "@bkt.r/?chunksize=-1",
		"endpoint scheme":          "s3://AK:" + secret + "@bkt.r/?regionendpoint=ftp://host",
		"endpoint with path":       "s3://AK:" + secret + "@bkt.r/?regionendpoint=http://host/base",
		"endpoint with creds":      "s3://AK:" + secret + "@bkt.r/?regionendpoint=http://u:" + secret + "@host",
		"sign endpoint with query": "s3://AK:" + secret + "@bkt.r/?signendpoint=http://host/?x=" + token,
		"dot-dot root":             "s3://AK:" + secret + "@bkt.r/a/../b",
		"empty root segment":       "s3://AK:" + secret + "@bkt.r/a//b",
		"reserved marker in root":  "s3://AK:" + secret + "@bkt.r/a~~b",
		"bad query escape":         "s3://AK:" + secret + "@bkt.r/?sessiontoken=" + token + "%zz",
	}
	for name, raw := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := s3.ParseURL(raw)
			if err == nil {
				t.Fatalf("ParseURL(%q) succeeded; want an error", raw)
			}
			if !errors.Is(err, s3.ErrInvalidURL) {
				t.Errorf("error %v is not ErrInvalidURL", err)
			}
			msg := err.Error()
			if strings.Contains(msg, secret) || strings.Contains(msg, token) {
				t.Errorf("error %q reveals a credential", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q spans lines", msg)
			}
		})
	}
}

func TestParseURLErrorIsOneLineAndWrapped(t *testing.T) {
	_, err := s3.ParseURL("s3://AK:" + secret + "@bkt.r/?nope=1")
	if err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("error %v; want it to name the unknown parameter", err)
	}
	if errors.Unwrap(err) == nil {
		t.Errorf("error %v wraps nothing", err)
	}
}
