package modal

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	pb "github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb"
)

// maxMessage is the message size limit Modal's SDKs use both ways.
const maxMessage = 100 << 20

// Client identification, as Modal's Go SDK sends it: the server gates
// behaviour on these.
const (
	clientType    = "9" // CLIENT_TYPE_LIBMODAL_GO
	clientVersion = "1.0.0"
	libVersion    = "modal-go/0.9.0"
)

// target turns a server URL into a dial target and its transport security:
// https:// is TLS (port 443 by default), http:// plaintext (port 80).
func target(raw string) (addr string, creds credentials.TransportCredentials, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", nil, fmt.Errorf("%s=%q is not a URL like https://api.modal.com:443", EnvServerURL, raw)
	}
	port := u.Port()
	switch u.Scheme {
	case "https":
		creds = credentials.NewTLS(&tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12})
		if port == "" {
			port = "443"
		}
	case "http":
		creds = insecure.NewCredentials()
		if port == "" {
			port = "80"
		}
	default:
		return "", nil, fmt.Errorf("%s=%q: the scheme must be https:// (or http:// for a local server)", EnvServerURL, raw)
	}
	return net.JoinHostPort(u.Hostname(), port), creds, nil
}

func isLocalhost(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	switch u.Hostname() {
	case "localhost", "127.0.0.1", "::1", "172.21.0.1":
		return true
	}
	return false
}

func dialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithUserAgent("mcp-sandbox"),
		// Fixed flow-control windows: output a caller has not consumed yet
		// waits in the sandbox, not in this process's memory.
		grpc.WithInitialWindowSize(1 << 20),
		grpc.WithInitialConnWindowSize(4 << 20),
	}
}

func (p *Provider) dialControlPlane() error {
	addr, creds, err := target(p.o.ServerURL)
	if err != nil {
		return err
	}
	opts := append(dialOptions(creds),
		grpc.WithChainUnaryInterceptor(p.controlMetadata),
		grpc.WithChainStreamInterceptor(p.controlStreamMetadata))
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", EnvServerURL, p.o.ServerURL, err)
	}
	p.cc, p.cp = cc, pb.NewModalClientClient(cc)
	p.localRouter = isLocalhost(p.o.ServerURL)
	return nil
}

// withAuth adds the headers every control-plane call carries.
func (p *Provider) withAuth(ctx context.Context, method string) (context.Context, error) {
	md := metadata.Pairs(
		"x-modal-client-type", clientType,
		"x-modal-client-version", clientVersion,
		"x-modal-libmodal-version", libVersion,
		"x-modal-token-id", p.o.TokenID,
		"x-modal-token-secret", p.o.TokenSecret,
	)
	if !strings.HasSuffix(method, "/AuthTokenGet") {
		tok, err := p.auth.get(ctx)
		if err != nil {
			return nil, err
		}
		md.Set("x-modal-auth-token", tok)
	}
	return metadata.NewOutgoingContext(ctx, metadata.Join(mdFrom(ctx), md)), nil
}

func mdFrom(ctx context.Context) metadata.MD {
	md, _ := metadata.FromOutgoingContext(ctx)
	return md
}

func (p *Provider) controlMetadata(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx, err := p.withAuth(ctx, method)
	if err != nil {
		return err
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (p *Provider) controlStreamMetadata(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ctx, err := p.withAuth(ctx, method)
	if err != nil {
		return nil, err
	}
	return streamer(ctx, desc, cc, method, opts...)
}

// tokenCache holds the JWT from AuthTokenGet and renews it at half its
// lifetime, as the SDKs do.
type tokenCache struct {
	p       *Provider
	mu      sync.Mutex
	token   string
	renewAt time.Time
}

func (c *tokenCache) get(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Now().Before(c.renewAt) {
		return c.token, nil
	}
	var res *pb.AuthTokenGetResponse
	_, err := c.p.retry(ctx, "AuthTokenGet", func(ctx context.Context) (err error) {
		res, err = c.p.cp.AuthTokenGet(ctx, &pb.AuthTokenGetRequest{})
		return err
	})
	if err != nil {
		return "", err
	}
	if res.GetToken() == "" {
		return "", status.Error(codes.Internal, "Modal answered AuthTokenGet with an empty token")
	}
	c.token = res.GetToken()
	lifetime := 20 * time.Minute // what the SDKs assume without exp
	if exp, ok := jwtExpiry(c.token); ok {
		lifetime = time.Until(exp)
	}
	c.renewAt = time.Now().Add(lifetime / 2)
	return c.token, nil
}

// jwtExpiry reads exp from a JWT's payload (unverified: only to know when
// to renew).
func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(b, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(int64(claims.Exp), 0), true
}

// transient codes are retried, as Modal's SDK retries them.
func transient(code codes.Code) bool {
	switch code {
	case codes.DeadlineExceeded, codes.Unavailable, codes.Canceled, codes.Internal, codes.Unknown:
		return true
	}
	return false
}

// retryAfter is the server's request to slow down, carried in the status
// details as a modal.client.RPCRetryPolicy.
func retryAfter(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if rp, ok := d.(*pb.RPCRetryPolicy); ok {
			return time.Duration(float64(rp.GetRetryAfterSecs()) * float64(time.Second)), true
		}
	}
	return 0, false
}

// retry runs one unary call with Modal's retry rules: transient codes up to
// Retries times with a doubling backoff, throttling after the delay the
// server asks for (up to MaxThrottleWait), each attempt bounded by
// RequestTimeout and all attempts sharing one idempotency key. It returns
// how many attempts were made.
func (p *Provider) retry(ctx context.Context, what string, call func(ctx context.Context) error) (int, error) {
	key := uuid.NewString()
	start := time.Now()
	delay := p.o.RetryBase
	retries, throttles := 0, 0
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.o.RequestTimeout)
		actx = metadata.AppendToOutgoingContext(actx, "x-idempotency-key", key,
			"x-retry-attempt", strconv.Itoa(retries), "x-throttle-retry-attempt", strconv.Itoa(throttles))
		err := call(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return attempt, err
		}
		var wait time.Duration
		if d, ok := retryAfter(err); ok {
			wait = max(d, p.o.RetryBase)
			if time.Since(start)+wait > p.o.MaxThrottleWait {
				return attempt, err
			}
			throttles++
			p.log.Debug("modal: throttled", "call", what, "retry_after", wait)
		} else if transient(status.Code(err)) && retries < p.o.Retries {
			retries++
			wait = delay/2 + rand.N(delay/2+1)
			delay = min(delay*2, time.Second)
			p.log.Debug("modal: retrying", "call", what, "attempt", attempt, "err", err)
		} else {
			return attempt, err
		}
		select {
		case <-ctx.Done():
			return attempt, err
		case <-time.After(wait):
		}
	}
}

// typed turns a gRPC failure into a providers error that says what to do.
func (p *Provider) typed(ctx context.Context, id, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err() // the caller gave up; nothing to explain
	}
	var pe *providers.Error
	if errors.As(err, &pe) {
		return err
	}
	st, _ := status.FromError(err)
	msg := st.Message()
	switch st.Code() {
	case codes.NotFound:
		if id != "" {
			return notFound(id)
		}
		return providers.Errorf(providers.ErrNotFound, "%s: %s", what, msg)
	case codes.Unauthenticated, codes.PermissionDenied:
		return providers.Errorf(providers.ErrDenied, "%s: Modal rejected the token (%s); check %s and %s", what, msg, EnvTokenID, EnvTokenSecret)
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.OutOfRange:
		return providers.Errorf(providers.ErrInvalidArgument, "%s: %s", what, msg)
	case codes.ResourceExhausted:
		return providers.Errorf(providers.ErrUnavailable, "%s: Modal's rate limit or quota was reached (%s); retry later or terminate unused sandboxes", what, msg)
	case codes.DeadlineExceeded:
		return providers.Errorf(providers.ErrUnavailable, "%s: Modal did not answer within %v, even after retries; try again later", what, p.o.RequestTimeout)
	case codes.Unavailable:
		return providers.Errorf(providers.ErrUnavailable, "%s: cannot reach Modal at %s (%s); check %s and the network", what, p.o.ServerURL, msg, EnvServerURL)
	}
	return providers.Errorf(providers.ErrUnavailable, "%s: Modal answered %s: %s", what, st.Code(), msg)
}
