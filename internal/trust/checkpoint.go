// Package trust signs and checks checkpoints of a data folder's hash chain
// (docs/adr/0016-merkle-roots-and-hash-chain.md): a checkpoint says how
// many events the chain covered and its head at a time, signed with an
// Ed25519 key, so that an external witness holding it can later tell
// whether the store still extends it.
package trust

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Checkpoint is one signed line of DATA/checkpoints.
type Checkpoint struct {
	// V is the format: 0 (absent) is 1, events only; 2 also signs the
	// access log's head (AccessLines, AccessHead). Removing it, or the
	// access fields, changes the signed text, so the signature fails.
	V int `json:"v,omitempty"`
	// Events is the tree size: the events of every sealed segment up to
	// and including WAL segment WAL, retired ones included.
	Events int `json:"events"`
	// WAL is the newest sealed WAL segment the chain covers.
	WAL uint64 `json:"wal"`
	// Head is the chain head after WAL, in hex.
	Head string `json:"head"`
	// AccessLines and AccessHead are the access log's chain head (v2):
	// its number of lines and the hash of the last, in hex.
	AccessLines int64  `json:"accessLines,omitempty"`
	AccessHead  string `json:"accessHead,omitempty"`
	// Time is when it was signed, UTC.
	Time time.Time `json:"time"`
	// Key is the first 8 bytes of SHA-256 of the public key, in hex, to
	// tell keys apart; the signature is what proves anything.
	Key string `json:"key"`
	// Sig is the Ed25519 signature of Message(), in hex.
	Sig string `json:"sig"`
}

// Message is what a checkpoint's signature covers.
func (c Checkpoint) Message() []byte {
	t := c.Time.UTC().Format(time.RFC3339Nano)
	if c.V == 0 {
		return fmt.Appendf(nil, "kubetrail checkpoint 1\nevents %d\nwal %d\nhead %s\ntime %s\n", c.Events, c.WAL, c.Head, t)
	}
	return fmt.Appendf(nil, "kubetrail checkpoint %d\nevents %d\nwal %d\nhead %s\naccess %d %s\ntime %s\n", c.V, c.Events, c.WAL, c.Head, c.AccessLines, c.AccessHead, t)
}

// KeyID is the short name of a public key that a checkpoint carries.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

// Sign signs a checkpoint (format 1) of the chain at (events, wal, head).
func Sign(key ed25519.PrivateKey, events int, wal uint64, head [32]byte, now time.Time) Checkpoint {
	return sign(key, Checkpoint{Events: events, WAL: wal, Head: hex.EncodeToString(head[:]), Time: now.UTC()})
}

// SignAccess signs a checkpoint (format 2) of the event chain at p and of
// the access log at acc. p may be the zero Point: no event is sealed yet.
func SignAccess(key ed25519.PrivateKey, p Point, acc AccessHead, now time.Time) Checkpoint {
	return sign(key, Checkpoint{V: 2, Events: p.Events, WAL: p.WAL, Head: hex.EncodeToString(p.Head[:]),
		AccessLines: acc.Lines, AccessHead: hex.EncodeToString(acc.Hash[:]), Time: now.UTC()})
}

func sign(key ed25519.PrivateKey, c Checkpoint) Checkpoint {
	c.Key = KeyID(key.Public().(ed25519.PublicKey))
	c.Sig = hex.EncodeToString(ed25519.Sign(key, c.Message()))
	return c
}

// Valid reports whether c's signature is pub's.
func (c Checkpoint) Valid(pub ed25519.PublicKey) bool {
	sig, err := hex.DecodeString(c.Sig)
	return err == nil && ed25519.Verify(pub, c.Message(), sig)
}

// validAny reports whether c is signed by one of pubs: after a key
// rotation, the old key's checkpoints and the new key's (docs/security.md).
func (c Checkpoint) validAny(pubs []ed25519.PublicKey) bool {
	for _, p := range pubs {
		if c.Valid(p) {
			return true
		}
	}
	return false
}

// LoadOrCreateKey reads the Ed25519 private key at path (PEM, PKCS #8),
// creating it, mode 0600, when create is true and there is none.
func LoadOrCreateKey(path string, create bool) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create signing key %s: %w", path, err)
		}
		if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
			f.Close()
			return nil, fmt.Errorf("write signing key %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("sync signing key %s: %w", path, err)
		}
		return key, f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("signing key %s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T is not an Ed25519 key", path, k)
	}
	return key, nil
}

// PublicPEM is the PEM (PKIX) form of key's public key, for --pubkey.
func PublicPEM(key ed25519.PrivateKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// LoadPublicKey reads a PEM public key (PublicPEM's form).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("public key %s: not PEM", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key %s: %T is not an Ed25519 key", path, k)
	}
	return pub, nil
}

// Append appends c to the checkpoints file at path, one JSON line, and
// syncs it.
func Append(path string, c Checkpoint) error {
	line, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// Line is a checkpoint and where it was read.
type Line struct {
	Checkpoint
	File string
	N    int
}

func (l Line) where() string { return l.File + ":" + strconv.Itoa(l.N) }

// Read reads a checkpoints file; a missing file holds none. A line that
// is not a checkpoint is an error naming it (a torn last line, which a
// crash leaves, is skipped).
func Read(path string) ([]Line, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Line
	lines := bytes.Split(b, []byte("\n"))
	for i, line := range lines {
		if len(line) == 0 {
			continue
		}
		var c Checkpoint
		if err := json.Unmarshal(line, &c); err != nil {
			if i == len(lines)-1 {
				break // torn last line: a crash while appending
			}
			return nil, fmt.Errorf("%s:%d: not a checkpoint: %w", path, i+1, err)
		}
		out = append(out, Line{Checkpoint: c, File: path, N: i + 1})
	}
	return out, nil
}

// Point is the chain's head after a sealed WAL segment (local.ChainPoint).
type Point struct {
	WAL    uint64
	Events int
	Head   [32]byte
	// Retired, when not 0, says the point ends a segment of that many
	// events that retention deleted: the points inside it are gone.
	Retired int
}

// Check checks checkpoints against the store's chain points: each must be
// signed by one of pubs and the store must still extend it (the chain, at the
// checkpoint's tree size, has the head it signed). witness, when given,
// are checkpoints kept outside the folder: each must also be in local
// (else the local file was rolled back or cut). It returns one line per
// finding, and notes: a checkpoint whose tree size falls inside a segment
// retention deleted (one compacted from several WAL segments) can only
// have its signature checked.
func Check(local, witness []Line, pubs []ed25519.PublicKey, points []Point) (out, notes []string) {
	return CheckAccess(local, witness, pubs, points, nil)
}

// AccessCounts returns the access log line counts that format 2
// checkpoints signed, for CheckAccessLog.
func AccessCounts(lines ...[]Line) map[int64]bool {
	want := map[int64]bool{}
	for _, ls := range lines {
		for _, l := range ls {
			if l.AccessLines > 0 {
				want[l.AccessLines] = true
			}
		}
	}
	return want
}

// CheckAccess is Check that also checks the access log's head in format
// 2 checkpoints against acc (CheckAccessLog, given AccessCounts): the log
// must still hold, at the signed count, a line with the signed hash.
// acc nil checks no access log.
func CheckAccess(local, witness []Line, pubs []ed25519.PublicKey, points []Point, acc *AccessReport) (out, notes []string) {
	at := map[int]Point{}
	last := 0
	for _, p := range points {
		at[p.Events] = p
		last = max(last, p.Events)
	}
	retired := func(events int) bool {
		for _, p := range points {
			if p.Retired > 0 && p.Events-p.Retired < events && events < p.Events {
				return true
			}
		}
		return false
	}
	check := func(l Line) {
		if l.V != 0 && l.V != 2 {
			out = append(out, fmt.Sprintf("%s: checkpoint format %d is unknown to this kubetrail", l.where(), l.V))
			return
		}
		if !l.validAny(pubs) {
			out = append(out, fmt.Sprintf("%s: signature does not verify with the public key (key %s): re-signed with another key, or altered", l.where(), l.Key))
			return
		}
		if acc != nil && l.V == 2 {
			if f := checkAccessHead(l, acc); f != "" {
				out = append(out, f)
			}
		}
		p, ok := at[l.Events]
		switch {
		case l.Events == 0 && l.V == 2:
			// Signed before any event was sealed: it holds the access
			// log's head only.
		case ok && hex.EncodeToString(p.Head[:]) == l.Head:
		case ok:
			out = append(out, fmt.Sprintf("%s: the store no longer extends this checkpoint (%d events, signed %s): its chain head after WAL segment %d differs: history was rewritten", l.where(), l.Events, l.Time.Format(time.RFC3339), p.WAL))
		case retired(l.Events):
			notes = append(notes, fmt.Sprintf("%s: the checkpoint's tree size (%d events) falls inside a segment retention deleted: only its signature is checked", l.where(), l.Events))
		case l.Events > last:
			out = append(out, fmt.Sprintf("%s: the checkpoint (signed %s) covers %d events, the store's chain only %d: sealed segments or WAL segments were deleted or cut below a signed checkpoint", l.where(), l.Time.Format(time.RFC3339), l.Events, last))
		default:
			out = append(out, fmt.Sprintf("%s: no segment ends at %d events, the checkpoint's tree size: events were inserted or deleted before it", l.where(), l.Events))
		}
	}
	seen := map[string]bool{}
	prev := -1
	var prevAccess int64
	for _, l := range local {
		check(l)
		seen[l.Sig] = true
		noEvents := l.Events == 0 && l.V == 2 // signed when the event chain had no head
		if l.Events < prev && !noEvents {
			out = append(out, fmt.Sprintf("%s: covers fewer events (%d) than the checkpoint before it (%d): the file was altered", l.where(), l.Events, prev))
		}
		if !noEvents {
			prev = l.Events
		}
		if l.V == 2 && l.AccessLines < prevAccess {
			out = append(out, fmt.Sprintf("%s: covers fewer access log lines (%d) than a checkpoint before it (%d): the file was altered", l.where(), l.AccessLines, prevAccess))
		}
		prevAccess = max(prevAccess, l.AccessLines)
	}
	for _, l := range witness {
		if !seen[l.Sig] {
			check(l)
			out = append(out, fmt.Sprintf("%s: the witness holds this checkpoint (signed %s) and the data folder's checkpoints file does not: it was rolled back or cut", l.where(), l.Time.Format(time.RFC3339)))
		}
	}
	return out, notes
}

// checkAccessHead checks one format 2 checkpoint's access log head; ""
// when the log still extends it.
func checkAccessHead(l Line, acc *AccessReport) string {
	if l.AccessLines == 0 {
		return ""
	}
	p, ok := acc.Heads[l.AccessLines]
	switch {
	case ok && hex.EncodeToString(p.Hash[:]) == l.AccessHead:
		return ""
	case ok:
		return fmt.Sprintf("%s: the access log no longer extends this checkpoint (%d lines, signed %s): %s, its line %d, is not the line it signed: the log was rewritten up to there", l.where(), l.AccessLines, l.Time.Format(time.RFC3339), p.Where, l.AccessLines)
	case l.AccessLines > acc.Lines:
		return fmt.Sprintf("%s: the checkpoint (signed %s) covers %d access log lines, the log holds %d: lines were deleted or the log cut below a signed checkpoint", l.where(), l.Time.Format(time.RFC3339), l.AccessLines, acc.Lines)
	default:
		return fmt.Sprintf("%s: the access log has no line %d in its chain, the checkpoint's count: lines were deleted or inserted before it", l.where(), l.AccessLines)
	}
}
