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
//	[u32 LE payload length][u32 LE CRC32C(payload)][u32 LE CRC32C(the 8 bytes before)][payload]["FEND"]
//
// The header carries its own checksum so that recovery can tell a torn tail
// from damage: a flipped length bit fails the header checksum instead of
// making the frame run past the end of the file, which is what a torn write
// looks like.
//
// The constant trailer makes the last byte of every complete frame non-zero
// ('D' has two bits set, so no single bit flip zeroes it). A crash can cut a
// group's write at any byte, and some file systems then read the lost part
// as zeros where the write extended the file. So a bad frame from some point
// of which every byte to the end of the file is zero is a cut write, never
// a complete (possibly acknowledged) frame that rotted.
const (
	// MaxRecordBytes is the largest payload Append accepts. It bounds the
	// memory a reader must allocate for one frame, so a damaged length can
	// never make recovery allocate gigabytes.
	MaxRecordBytes = 64 << 20

	frameHeaderLen  = 12
	frameTrailerLen = 4
	frameTrailer    = "FEND"
)

// castagnoli is shared by every checksum in the package; the standard library
// uses the SSE4.2/ARMv8 CRC instructions for this polynomial.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameCRC returns the payload checksum stored in a frame header.
func frameCRC(payload []byte) uint32 { return crc32.Checksum(payload, castagnoli) }

// frameLen is the on-disk size of a frame carrying n payload bytes.
func frameLen(n int) int { return frameHeaderLen + n + frameTrailerLen }

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
	b = append(b, payload...)
	return append(b, frameTrailer...)
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
	errTrailer        = errors.New("frame trailer mismatch")
)

// headerIntact reports whether a frame that failed for reason had a header
// that passed its checksum (so its length can be trusted).
func headerIntact(reason error) bool {
	return reason == errShortFrame || reason == errChecksum || reason == errTrailer
}

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
	n = frameLen(int(size))
	if uint64(len(b)) < uint64(n) {
		return nil, 0, errShortFrame
	}
	payload = b[frameHeaderLen : frameHeaderLen+int(size)]
	if string(b[n-frameTrailerLen:n]) != frameTrailer {
		return nil, 0, errTrailer
	}
	if frameCRC(payload) != sum {
		return nil, 0, errChecksum
	}
	return payload, n, nil
}

// damage describes a frame that could not be read from a segment.
type damage struct {
	off    int64 // offset of the damaged frame from the start of the scan
	reason error // one of the err* frame sentinels above
	// frameBytes is the frame's length as its intact header announces it
	// (headerIntact(reason)), else zero.
	frameBytes int64
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
// error for a failed read. After a *damage the reader's position is
// unspecified.
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
	n := int64(frameLen(int(size)))
	if s.off+n > s.size {
		return nil, &damage{off: s.off, reason: errShortFrame, frameBytes: n}
	}
	body := size + frameTrailerLen
	if int64(cap(s.buf)) < body {
		s.buf = make([]byte, body)
	}
	if _, err := io.ReadFull(s.r, s.buf[:body]); err != nil {
		return nil, fmt.Errorf("read frame payload at offset %d: %w", s.off, noEOF(err))
	}
	payload := s.buf[:size]
	if string(s.buf[size:body]) != frameTrailer {
		return nil, &damage{off: s.off, reason: errTrailer, frameBytes: n}
	}
	if frameCRC(payload) != sum {
		return nil, &damage{off: s.off, reason: errChecksum, frameBytes: n}
	}
	s.off += n
	return payload, nil
}

// zeroTailBufferBytes sizes the reads of zeroTailStart.
const zeroTailBufferBytes = 64 << 10

// zeroTailStart returns the offset in r, at or after from, from which every
// byte up to size is zero (size itself when the last byte is not zero).
func zeroTailStart(r io.ReaderAt, from, size int64) (int64, error) {
	buf := make([]byte, zeroTailBufferBytes)
	start := from
	for off := from; off < size; {
		n := min(int64(len(buf)), size-off)
		if _, err := r.ReadAt(buf[:n], off); err != nil {
			return 0, fmt.Errorf("read at offset %d: %w", off, noEOF(err))
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				start = off + i + 1
				break
			}
		}
		off += n
	}
	return start, nil
}

// noEOF turns an EOF in the middle of a frame whose length fit in the file
// into ErrUnexpectedEOF: the file shrank while we read it.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
