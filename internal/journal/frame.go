package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// A frame on disk is
//
//	[u32 LE payload length][u32 LE CRC32C(payload)][u32 LE CRC32C(the 8 bytes before)][payload]
//
// The header carries its own checksum so that recovery can tell a torn tail
// from damage. A crash can leave the file ending inside a header, or a
// valid header whose payload was not all written; it cannot leave a complete
// header that fails its own checksum. So a header that fails its checksum
// (and is not all zero, which is what a zero-filled preallocation looks
// like) is damage, and in particular a flipped length bit is never mistaken
// for a frame that runs past the end of the file.
const (
	// MaxRecordBytes is the largest payload Append accepts. It bounds the
	// memory a reader must allocate for one frame, so a damaged length can
	// never make recovery allocate gigabytes.
	MaxRecordBytes = 64 << 20

	frameHeaderLen = 12
)

// castagnoli is shared by every checksum in the package; the standard library
// uses the SSE4.2/ARMv8 CRC instructions for this polynomial.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameCRC returns the payload checksum stored in a frame header.
func frameCRC(payload []byte) uint32 { return crc32.Checksum(payload, castagnoli) }

// frameLen is the on-disk size of a frame carrying n payload bytes.
func frameLen(n int) int { return frameHeaderLen + n }

// appendFrameHeader appends the 12-byte header for a payload of length n
// with payload checksum crc. It does not allocate when b has room: the
// header checksum is computed over b's own bytes.
func appendFrameHeader(b []byte, n int, crc uint32) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, crc)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:start+8], castagnoli))
}

// appendFrame appends the complete frame for payload to b.
func appendFrame(b, payload []byte) []byte {
	b = appendFrameHeader(b, len(payload), frameCRC(payload))
	return append(b, payload...)
}

// Reasons a frame fails to decode. They are internal: Open reports damage as
// ErrCorrupt (or truncates a torn tail) and names the file and offset.
var (
	errShortHeader    = errors.New("file ends inside a frame header")
	errZeroHeader     = errors.New("zero frame header")
	errHeaderChecksum = errors.New("frame header crc mismatch")
	errBadLength      = errors.New("frame length exceeds maximum")
	errShortFrame     = errors.New("frame runs past end of data")
	errChecksum       = errors.New("payload crc mismatch")
)

// parseFrameHeader checks a frame header and returns the payload length and
// checksum it announces.
func parseFrameHeader(h []byte) (size, crc uint32, err error) {
	if crc32.Checksum(h[0:8], castagnoli) != binary.LittleEndian.Uint32(h[8:12]) {
		if isZero(h[:frameHeaderLen]) {
			return 0, 0, errZeroHeader
		}
		return 0, 0, errHeaderChecksum
	}
	size = binary.LittleEndian.Uint32(h[0:4])
	if size > MaxRecordBytes {
		// Only a writer other than Append, or a checksum collision, can
		// produce this; it is damage either way.
		return 0, 0, errBadLength
	}
	return size, binary.LittleEndian.Uint32(h[4:8]), nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// decodeFrame decodes the frame at the start of b. It returns the payload
// (aliasing b) and the frame's total length. It never reads past b and never
// panics on arbitrary input. It is the in-memory twin of frameScanner.next,
// kept for the fuzz target that checks the two agree.
func decodeFrame(b []byte) (payload []byte, n int, err error) {
	if len(b) < frameHeaderLen {
		return nil, 0, errShortHeader
	}
	size, sum, err := parseFrameHeader(b)
	if err != nil {
		return nil, 0, err
	}
	if uint64(len(b)-frameHeaderLen) < uint64(size) {
		return nil, 0, errShortFrame
	}
	payload = b[frameHeaderLen : frameHeaderLen+int(size)]
	if frameCRC(payload) != sum {
		return nil, 0, errChecksum
	}
	return payload, frameHeaderLen + int(size), nil
}

// damage describes a frame that could not be read from a segment.
type damage struct {
	off    int64 // offset of the damaged frame from the start of the scan
	reason error // one of the err* frame sentinels above
}

func (d *damage) Error() string { return fmt.Sprintf("offset %d: %v", d.off, d.reason) }

// frameScanner reads frames sequentially from a segment's data of known
// size. The size comes from the caller rather than from EOF so that a frame
// running past the end is recognised without trying to read it.
type frameScanner struct {
	r    *bufio.Reader
	off  int64 // offset of the next frame, from where the scan began
	size int64 // bytes readable from where the scan began
	hdr  [frameHeaderLen]byte
	buf  []byte
}

// readBufferBytes sizes the segment reader. Replay sees mostly ~1 MB records,
// which bufio passes straight through to the file; the buffer only matters for
// headers and small records.
const readBufferBytes = 256 << 10

func newFrameScanner(r io.Reader, size int64) *frameScanner {
	return &frameScanner{r: bufio.NewReaderSize(r, readBufferBytes), size: size}
}

// next returns the next payload, valid until the following call. It returns
// io.EOF exactly at the end, a *damage for an undecodable frame, and any other
// error for a failed read. After a *damage for errZeroHeader the reader is
// positioned just past the header, so that restIsZero can examine the rest.
func (s *frameScanner) next() ([]byte, error) {
	rem := s.size - s.off
	if rem == 0 {
		return nil, io.EOF
	}
	if rem < frameHeaderLen {
		return nil, &damage{off: s.off, reason: errShortHeader}
	}
	if _, err := io.ReadFull(s.r, s.hdr[:]); err != nil {
		return nil, fmt.Errorf("read frame header at offset %d: %w", s.off, noEOF(err))
	}
	size32, sum, err := parseFrameHeader(s.hdr[:])
	if err != nil {
		return nil, &damage{off: s.off, reason: err}
	}
	size := int64(size32)
	if s.off+frameHeaderLen+size > s.size {
		return nil, &damage{off: s.off, reason: errShortFrame}
	}
	if int64(cap(s.buf)) < size {
		s.buf = make([]byte, size)
	}
	payload := s.buf[:size]
	if _, err := io.ReadFull(s.r, payload); err != nil {
		return nil, fmt.Errorf("read frame payload at offset %d: %w", s.off, noEOF(err))
	}
	if frameCRC(payload) != sum {
		return nil, &damage{off: s.off, reason: errChecksum}
	}
	s.off += frameHeaderLen + size
	return payload, nil
}

// restIsZero reports whether every byte from the reader's position to the
// end of the scanned data is zero.
func (s *frameScanner) restIsZero(from int64) (bool, error) {
	var buf [32 << 10]byte
	left := s.size - from
	for left > 0 {
		n, err := s.r.Read(buf[:min(int64(len(buf)), left)])
		if !isZero(buf[:n]) {
			return false, nil
		}
		left -= int64(n)
		if err == io.EOF {
			if left > 0 {
				return false, fmt.Errorf("read at offset %d: %w", s.size-left, io.ErrUnexpectedEOF)
			}
			break
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// noEOF turns an EOF in the middle of a frame whose length fit in the file
// into ErrUnexpectedEOF: the file shrank while we read it.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
