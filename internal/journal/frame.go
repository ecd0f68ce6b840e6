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
//	[u32 LE payload length][u32 LE CRC32C(length bytes ‖ payload)][payload]
//
// The checksum covers the length too, so a flipped length bit is caught
// even when the shorter or longer payload happens to be readable.
const (
	// MaxRecordBytes is the largest payload Append accepts. It bounds the
	// memory a reader must allocate for one frame, so a damaged length can
	// never make recovery allocate gigabytes.
	MaxRecordBytes = 64 << 20

	frameHeaderLen = 8
)

// castagnoli is shared by every checksum in the package; the standard library
// uses the SSE4.2/ARMv8 CRC instructions for this polynomial.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameCRC returns the checksum stored in a frame header for payload.
func frameCRC(payload []byte) uint32 {
	return crc32.Update(lengthCRC(uint32(len(payload))), castagnoli, payload)
}

// lengthCRC is the CRC32C of the four little-endian bytes of n. It runs the
// table-driven byte loop by hand because passing a local array to
// crc32.Update makes it escape, which would cost Append an allocation.
func lengthCRC(n uint32) uint32 {
	crc := ^uint32(0)
	for range 4 {
		crc = castagnoli[byte(crc)^byte(n)] ^ crc>>8
		n >>= 8
	}
	return ^crc
}

// frameLen is the on-disk size of a frame carrying n payload bytes.
func frameLen(n int) int { return frameHeaderLen + n }

// appendFrameHeader appends the 8-byte header for a payload of length n with
// checksum crc.
func appendFrameHeader(b []byte, n int, crc uint32) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	return binary.LittleEndian.AppendUint32(b, crc)
}

// appendFrame appends the complete frame for payload to b.
func appendFrame(b, payload []byte) []byte {
	b = appendFrameHeader(b, len(payload), frameCRC(payload))
	return append(b, payload...)
}

// Reasons a frame fails to decode. They are internal: Open reports damage as
// ErrCorrupt (or truncates a torn tail) and names the file and offset.
var (
	errShortHeader = errors.New("short frame header")
	errShortFrame  = errors.New("frame length runs past end of data")
	errBadLength   = errors.New("frame length exceeds maximum")
	errChecksum    = errors.New("crc mismatch")
)

// decodeFrame decodes the frame at the start of b. It returns the payload
// (aliasing b) and the frame's total length. It never reads past b and never
// panics on arbitrary input.
func decodeFrame(b []byte) (payload []byte, n int, err error) {
	if len(b) < frameHeaderLen {
		return nil, 0, errShortHeader
	}
	size := binary.LittleEndian.Uint32(b[0:4])
	sum := binary.LittleEndian.Uint32(b[4:8])
	if size > MaxRecordBytes {
		return nil, 0, errBadLength
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
	off    int64 // offset of the damaged frame in the segment
	reason error // one of the errShort*/errBadLength/errChecksum sentinels
	// rest is the offset from which the remaining bytes of the file were not
	// yet examined; recovery checks whether they are all zero.
	rest int64
}

func (d *damage) Error() string { return fmt.Sprintf("offset %d: %v", d.off, d.reason) }

// frameScanner reads frames sequentially from a segment of known size. The
// size comes from the caller rather than from EOF so that a damaged length can
// be recognised as running past the end without trying to read it.
type frameScanner struct {
	r    *bufio.Reader
	off  int64 // offset of the next frame
	size int64
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
// error for a failed read.
func (s *frameScanner) next() ([]byte, error) {
	rem := s.size - s.off
	if rem == 0 {
		return nil, io.EOF
	}
	if rem < frameHeaderLen {
		return nil, &damage{off: s.off, reason: errShortHeader, rest: s.off}
	}
	if _, err := io.ReadFull(s.r, s.hdr[:]); err != nil {
		return nil, fmt.Errorf("read frame header at offset %d: %w", s.off, noEOF(err))
	}
	size := int64(binary.LittleEndian.Uint32(s.hdr[0:4]))
	sum := binary.LittleEndian.Uint32(s.hdr[4:8])
	if s.off+frameHeaderLen+size > s.size {
		return nil, &damage{off: s.off, reason: errShortFrame, rest: s.off + frameHeaderLen}
	}
	if size > MaxRecordBytes {
		return nil, &damage{off: s.off, reason: errBadLength, rest: s.off + frameHeaderLen}
	}
	if int64(cap(s.buf)) < size {
		s.buf = make([]byte, size)
	}
	payload := s.buf[:size]
	if _, err := io.ReadFull(s.r, payload); err != nil {
		return nil, fmt.Errorf("read frame payload at offset %d: %w", s.off, noEOF(err))
	}
	if crc32.Update(lengthCRC(uint32(size)), castagnoli, payload) != sum {
		return nil, &damage{off: s.off, reason: errChecksum, rest: s.off + frameHeaderLen + size}
	}
	s.off += frameHeaderLen + size
	return payload, nil
}

// restIsZero reports whether every byte from the scanner's read position to
// the end of the segment is zero. The reader must be positioned at d.rest,
// which next guarantees for the damage it returned.
func (s *frameScanner) restIsZero() (bool, error) {
	var buf [32 << 10]byte
	for {
		n, err := s.r.Read(buf[:])
		for _, c := range buf[:n] {
			if c != 0 {
				return false, nil
			}
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// noEOF turns an EOF in the middle of a frame whose length fit in the file
// into ErrUnexpectedEOF: the file shrank while we read it.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
