package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/httpmirror/httpmirror/internal/admin"
)

// minTokenLength is the shortest admin token accepted: 16 characters of
// a random hex or base64 string are 64 bits or more.
const minTokenLength = 16

// checkAdmin checks the admin listener's flags and reads its tokens. An
// admin listener off loopback needs tokens, or AdminInsecure to say that
// something else guards it.
func (c *Config) checkAdmin() error {
	if c.AdminAddress == "" {
		if c.AdminTokenFile != "" || c.AdminMetricsAuth || c.AdminInsecure {
			return errors.New("--admin-token-file, --admin-metrics-auth and --admin-insecure need --admin-address")
		}
		return nil
	}
	loopback, err := IsLoopback(c.AdminAddress)
	if err != nil {
		return fmt.Errorf("invalid value %q for flag --admin-address: want host:port, such as 127.0.0.1:9090", c.AdminAddress)
	}
	if c.AdminTokenFile != "" {
		if c.AdminTokens, err = ReadTokenFile(c.AdminTokenFile); err != nil {
			return err
		}
	}
	if c.AdminMetricsAuth && len(c.AdminTokens) == 0 {
		return errors.New("--admin-metrics-auth needs --admin-token-file")
	}
	if !loopback && len(c.AdminTokens) == 0 && !c.AdminInsecure {
		return fmt.Errorf("--admin-address %s is not a loopback address and no --admin-token-file is set: whoever reaches it could purge the cache and make the mirror fetch; "+
			"give tokens with --admin-token-file, listen on 127.0.0.1, or pass --admin-insecure if a firewall guards it", c.AdminAddress)
	}
	return nil
}

// AdminExposed reports whether the admin listener runs off loopback
// without tokens, as only AdminInsecure allows.
func (c *Config) AdminExposed() bool {
	if c.AdminAddress == "" || len(c.AdminTokens) > 0 {
		return false
	}
	loopback, err := IsLoopback(c.AdminAddress)
	return err == nil && !loopback
}

// IsLoopback reports whether addr (host:port) listens on loopback only:
// its host is "localhost" or an address in 127.0.0.0/8 or ::1. An empty
// host (":9090") listens on every interface, as 0.0.0.0 and :: do; any
// other name is taken as not loopback, since what it resolves to may
// change.
func IsLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false, nil
	}
	return ip.Unmap().IsLoopback(), nil
}

// ReadTokenFile reads the admin tokens of file (see ParseTokens). Its
// errors name the file and the line, never a token.
func ReadTokenFile(file string) ([]admin.Token, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--admin-token-file: %v", err)
	}
	defer f.Close()
	tokens, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("--admin-token-file %s: %v", file, err)
	}
	return tokens, nil
}

// ParseTokens reads admin tokens, one per line:
//
//	# comment
//	TOKEN [NAME]
//
// Blank lines and lines starting with # are ignored. TOKEN is at least 16
// characters of the bearer token alphabet (letters, digits and -._~+/,
// then optional = padding), such as the output of "openssl rand -hex 32".
// NAME (letters, digits and ._@-, at most 64) is what the audit log
// calls the token; without it the token is called "line-N" after its
// line. Names and tokens must be unique. At least one token is required.
func ParseTokens(r io.Reader) ([]admin.Token, error) {
	var tokens []admin.Token
	names := map[string]int{}   // name → line
	secrets := map[string]int{} // token → line
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) > 2 {
			return nil, fmt.Errorf("line %d: want TOKEN [NAME]", n)
		}
		secret, name := fields[0], "line-"+strconv.Itoa(n)
		if len(fields) == 2 {
			name = fields[1]
		}
		if err := checkToken(secret); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if !validName(name) {
			return nil, fmt.Errorf("line %d: the name may hold letters, digits and ._@- only, at most 64", n)
		}
		if prev, dup := names[name]; dup {
			return nil, fmt.Errorf("line %d: the name %s is used on line %d already", n, name, prev)
		}
		if prev, dup := secrets[secret]; dup {
			return nil, fmt.Errorf("line %d: the same token as on line %d", n, prev)
		}
		names[name], secrets[secret] = n, n
		tokens = append(tokens, admin.Token{Name: name, Secret: secret})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading: %v", err)
	}
	if len(tokens) == 0 {
		return nil, errors.New("holds no token")
	}
	return tokens, nil
}

// checkToken checks that secret can be sent as a bearer token (RFC 6750
// section 2.1, b64token) and is long enough to be guessed by nobody. The
// error never repeats it.
func checkToken(secret string) error {
	body := strings.TrimRight(secret, "=")
	if body == "" {
		return errors.New("the token is not a bearer token")
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !isAlnum(c) && !strings.ContainsRune("-._~+/", rune(c)) {
			return errors.New("the token holds a character a bearer token cannot: use letters, digits and -._~+/ (openssl rand -hex 32 makes one)")
		}
	}
	if len(secret) < minTokenLength {
		return fmt.Errorf("the token is shorter than %d characters (openssl rand -hex 32 makes one)", minTokenLength)
	}
	return nil
}

func validName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && !strings.ContainsRune("._@-", rune(c)) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
