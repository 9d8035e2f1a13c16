package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// RedisStore keeps records in Redis, shared by every server pointed at it.
//
// A record is one JSON string under "<prefix>session:<id>", expiring after
// the idle TTL; an ended session's is the string "ended". A lease is
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
	s := &RedisStore{rdb: redis.NewClient(opts), prefix: "mcp-sandbox:", ttl: ttl}
	if err := s.Ping(ctx); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("Redis at %s does not answer: %w", opts.Addr, err)
	}
	return s, nil
}

func (s *RedisStore) key(id string) string  { return s.prefix + "session:" + id }
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

func (s *RedisStore) Get(ctx context.Context, id string) (Record, error) {
	var v string
	var err error
	if s.ttl > 0 {
		v, err = s.rdb.GetEx(ctx, s.key(id), s.ttl).Result()
	} else {
		v, err = s.rdb.Get(ctx, s.key(id)).Result()
	}
	if errors.Is(err, redis.Nil) {
		return Record{}, nil
	}
	if err != nil {
		return Record{}, &StoreError{err}
	}
	if v == endedValue && s.ttl > 0 {
		// GETEX stretched the tombstone to the idle TTL; put its own back.
		s.rdb.Expire(ctx, s.key(id), s.endedTTL())
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
return v or ''
`)

func (s *RedisStore) End(ctx context.Context, id string) (Record, bool, error) {
	v, err := endScript.Run(ctx, s.rdb, []string{s.key(id)}, endedValue, s.endedTTL().Milliseconds()).Text()
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
	n, err := putScript.Run(ctx, l.s.rdb, []string{l.s.key(l.id), l.s.lock(l.id)},
		l.token, b, endedValue, l.s.ttl.Milliseconds()).Int()
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

func (s *RedisStore) Shared() bool { return true }

func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return &StoreError{err}
	}
	return nil
}

func (s *RedisStore) Close() error { return s.rdb.Close() }
