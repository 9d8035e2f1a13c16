package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// RedisStore keeps records in Redis, shared by every server pointed at it.
//
// A record is one JSON string under "<prefix>session:<id>", expiring after
// the idle TTL; an ended session's is the string "ended". The live ones are
// also in the sorted set "<prefix>live", scored by when they expire, so
// that servers can count them for session caps; a session started by a
// named client is also in the set "<prefix>client:<client>", checked
// against the live set when counted. A lease is
// "<prefix>lock:<id>" set with NX to a random token and kept alive while
// held; writes check the token in the same script, so a server whose lease
// lapsed (a long pause, a partition) cannot overwrite a newer record.
type RedisStore struct {
	rdb    *redis.Client
	prefix string
	ttl    time.Duration
}

// leaseTTL bounds how long a dead server's lease blocks a session; a live
// holder renews it every leaseTTL/3.
const leaseTTL = 15 * time.Second

const endedValue = "ended"

// NewRedisStore connects to the Redis at url (redis:// or rediss://, with
// password and database as go-redis parses them). Records idle for ttl
// expire (0: never, until ended).
func NewRedisStore(ctx context.Context, url string, ttl time.Duration) (*RedisStore, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("not a Redis URL: %v (use redis://[user:password@]host:6379/0, or rediss:// for TLS)", err)
	}
	quietRedis.Do(func() { redis.SetLogger(discardLogger{}) })
	s := &RedisStore{rdb: redis.NewClient(opts), prefix: "mcp-sandbox:", ttl: ttl}
	if err := s.Ping(ctx); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("Redis at %s does not answer: %w", opts.Addr, err)
	}
	return s, nil
}

// quietRedis silences go-redis's own log lines (a failed dial, printed to
// stderr outside the server's log format): each failure reaches the caller
// as an error, which the server logs and answers with.
var quietRedis sync.Once

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

func (s *RedisStore) key(id string) string   { return s.prefix + "session:" + id }
func (s *RedisStore) live() string           { return s.prefix + "live" }
func (s *RedisStore) pin(name string) string { return s.prefix + "pin:" + name }
func (s *RedisStore) client(c string) string { return s.prefix + "client:" + c }

// liveScore is when a record written or used now expires, in Unix
// milliseconds (+inf without a TTL).
func (s *RedisStore) liveScore() string {
	if s.ttl <= 0 {
		return "+inf"
	}
	return fmt.Sprint(time.Now().Add(s.ttl).UnixMilli())
}
func (s *RedisStore) lock(id string) string { return s.prefix + "lock:" + id }

func (s *RedisStore) endedTTL() time.Duration { return max(s.ttl, endedRetention) }

func decode(v string) (Record, error) {
	if v == endedValue {
		return Record{Ended: true}, nil
	}
	var r Record
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return Record{}, fmt.Errorf("corrupt session record: %w", err)
	}
	return r, nil
}

// getScript reads a record and, unless it is the tombstone, counts it as a
// use: its TTL and its score in the live set start again.
var getScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return false end
if v ~= ARGV[1] and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[4])
end
return v
`)

func (s *RedisStore) Get(ctx context.Context, id string) (Record, error) {
	v, err := getScript.Run(ctx, s.rdb, []string{s.key(id), s.live()},
		endedValue, s.ttl.Milliseconds(), s.liveScore(), id).Text()
	if errors.Is(err, redis.Nil) {
		return Record{}, nil
	}
	if err != nil {
		return Record{}, &StoreError{err}
	}
	return decode(v)
}

func (s *RedisStore) Live(ctx context.Context, id string) (bool, error) {
	v, err := s.rdb.Get(ctx, s.key(id)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, &StoreError{err}
	}
	return v != endedValue, nil
}

// endScript swaps the record for the tombstone and returns what it was
// (false when it already was the tombstone): one caller wins.
var endScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
return v or ''
`)

func (s *RedisStore) End(ctx context.Context, id string) (Record, bool, error) {
	v, err := endScript.Run(ctx, s.rdb, []string{s.key(id), s.live()}, endedValue, s.endedTTL().Milliseconds(), id).Text()
	if errors.Is(err, redis.Nil) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, &StoreError{err}
	}
	if v == "" {
		return Record{}, true, nil
	}
	r, err := decode(v)
	return r, true, err
}

// putScript writes the record only while the caller's token holds the
// lease and the session has not ended.
var putScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('GET', KEYS[1]) == ARGV[3] then return -2 end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[6])
if ARGV[7] ~= '' then
  redis.call('SADD', KEYS[4], ARGV[6])
  if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[4], ARGV[4]) end
end
return 1
`)

// renewScript and releaseScript touch the lease only while it is ours.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

type redisLease struct {
	s     *RedisStore
	id    string
	token string
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// lockPoll is how often a waiter tries for a lease another server holds.
const lockPoll = 20 * time.Millisecond

func (s *RedisStore) Lock(ctx context.Context, id string) (Lease, error) {
	token := uuid.NewString()
	for {
		ok, err := s.rdb.SetNX(ctx, s.lock(id), token, leaseTTL).Result()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &StoreError{err}
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(lockPoll):
		}
	}
	l := &redisLease{s: s, id: id, token: token, stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew()
	return l, nil
}

// renew keeps the lease while it is held: creating a sandbox can take
// longer than leaseTTL.
func (l *redisLease) renew() {
	defer close(l.done)
	t := time.NewTicker(leaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), leaseTTL/3)
			renewScript.Run(ctx, l.s.rdb, []string{l.s.lock(l.id)}, l.token, leaseTTL.Milliseconds())
			cancel()
		}
	}
}

func (l *redisLease) Put(ctx context.Context, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	n, err := putScript.Run(ctx, l.s.rdb, []string{l.s.key(l.id), l.s.lock(l.id), l.s.live(), l.s.client(r.Client)},
		l.token, b, endedValue, l.s.ttl.Milliseconds(), l.s.liveScore(), l.id, r.Client).Int()
	switch {
	case err != nil:
		return &StoreError{err}
	case n == -1:
		return ErrLeaseLost
	case n == -2:
		return ErrEnded
	}
	return nil
}

func (l *redisLease) Release() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// If this fails the lease lapses by itself within leaseTTL.
		releaseScript.Run(ctx, l.s.rdb, []string{l.s.lock(l.id)}, l.token)
	})
}

// Count drops from the live set the sessions that expired (their records
// went by their TTL) and counts the rest.
func (s *RedisStore) Count(ctx context.Context) (int, error) {
	pipe := s.rdb.TxPipeline()
	pipe.ZRemRangeByScore(ctx, s.live(), "-inf", fmt.Sprint(time.Now().UnixMilli()))
	n := pipe.ZCard(ctx, s.live())
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, &StoreError{err}
	}
	return int(n.Val()), nil
}

// Idlest reads the live set's lowest score: the session whose expiry, and
// so whose last use, is earliest.
func (s *RedisStore) Idlest(ctx context.Context, idle time.Duration) (string, bool, error) {
	if s.ttl <= 0 {
		return "", false, nil
	}
	now := time.Now()
	ids, err := s.rdb.ZRangeByScore(ctx, s.live(), &redis.ZRangeBy{
		Min: fmt.Sprint(now.UnixMilli()), Max: fmt.Sprint(now.Add(s.ttl - idle).UnixMilli()), Count: 1,
	}).Result()
	if err != nil {
		return "", false, &StoreError{err}
	}
	if len(ids) == 0 {
		return "", false, nil
	}
	return ids[0], true, nil
}

// clientScript counts the members of a client's set that are still in the
// live set (dropping the others: ended or expired), and returns the one
// with the lowest score if it is at most ARGV[2] (idle long enough).
var clientScript = redis.NewScript(`
local now, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
local n, best, bestScore = 0, '', nil
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local sc = redis.call('ZSCORE', KEYS[2], m)
  local v = sc and (tonumber(sc) or math.huge)
  if not v or v <= now then
    redis.call('SREM', KEYS[1], m)
  else
    n = n + 1
    if v <= idle and (not bestScore or v < bestScore) then best, bestScore = m, v end
  end
end
return {n, best}
`)

func (s *RedisStore) ClientSessions(ctx context.Context, client string, idle time.Duration) (int, string, bool, error) {
	now := time.Now()
	idleScore := "0" // without a TTL there is no record of last use: none is idle
	if s.ttl > 0 {
		idleScore = fmt.Sprint(now.Add(s.ttl - idle).UnixMilli())
	}
	v, err := clientScript.Run(ctx, s.rdb, []string{s.client(client), s.live()}, now.UnixMilli(), idleScore).Slice()
	if err != nil {
		return 0, "", false, &StoreError{err}
	}
	if len(v) != 2 {
		return 0, "", false, &StoreError{fmt.Errorf("unexpected answer %v", v)}
	}
	n, _ := v[0].(int64)
	best, _ := v[1].(string)
	return int(n), best, best != "", nil
}

func (s *RedisStore) Pin(ctx context.Context, name, value string) (string, error) {
	if err := s.rdb.SetNX(ctx, s.pin(name), value, 0).Err(); err != nil {
		return "", &StoreError{err}
	}
	v, err := s.rdb.Get(ctx, s.pin(name)).Result()
	if err != nil {
		return "", &StoreError{err}
	}
	return v, nil
}

func (s *RedisStore) Shared() bool { return true }

func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return &StoreError{err}
	}
	return nil
}

func (s *RedisStore) Close() error { return s.rdb.Close() }

func (s *RedisStore) hold(name string) string { return s.prefix + "hold:" + name }

// redisHold is a store-wide lease: "<prefix>hold:<name>" set with NX to a
// random token, renewed every third of its TTL while held. A server that
// dies holding it loses it when the TTL runs out.
type redisHold struct {
	s          *RedisStore
	key, token string
	ttl        time.Duration
	until      atomic.Int64 // Unix nanoseconds until which the lease is surely ours
	stop, done chan struct{}
	once       sync.Once
}

func (s *RedisStore) TryHold(ctx context.Context, name string, ttl time.Duration) (Hold, error) {
	token, start := uuid.NewString(), time.Now()
	ok, err := s.rdb.SetNX(ctx, s.hold(name), token, ttl).Result()
	if err != nil {
		return nil, &StoreError{err}
	}
	if !ok {
		return nil, nil
	}
	h := &redisHold{s: s, key: s.hold(name), token: token, ttl: ttl, stop: make(chan struct{}), done: make(chan struct{})}
	h.until.Store(start.Add(ttl).UnixNano())
	go h.renew()
	return h, nil
}

func (h *redisHold) renew() {
	defer close(h.done)
	t := time.NewTicker(h.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		// Counted from before the call: Redis may have renewed it then.
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), h.ttl/3)
		n, err := renewScript.Run(ctx, h.s.rdb, []string{h.key}, h.token, h.ttl.Milliseconds()).Int()
		cancel()
		switch {
		case err == nil && n == 1:
			h.until.Store(start.Add(h.ttl).UnixNano())
		case err == nil:
			h.until.Store(0) // it lapsed, and may be another server's now
			return
		}
		// A failed renewal leaves the lease ours until the last one's expiry.
	}
}

func (h *redisHold) Held() bool { return time.Now().UnixNano() < h.until.Load() }

func (h *redisHold) Release() {
	h.once.Do(func() {
		close(h.stop)
		<-h.done
		h.until.Store(0)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		releaseScript.Run(ctx, h.s.rdb, []string{h.key}, h.token)
	})
}
