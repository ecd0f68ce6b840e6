package projection

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
)

// ChunkRef names one side file of an incremental snapshot and what it must
// hold, so that a load refuses a chunk that was lost, cut short or damaged
// instead of reading another state than the one snapshotted.
type ChunkRef struct {
	Name  string
	Bytes uint64
	CRC   uint32 // CRC-32C of the whole file
}

// Bounds a chunk reference is read against.
const (
	ChunkNameBytesMax = 256
	// ChunkBytesMax is the largest side file a projection writes.
	ChunkBytesMax = chunkFileBytesMax
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrChunkDamaged is wrapped by LoadChunk's error for a chunk whose length
// or CRC is not the one its snapshot recorded.
var ErrChunkDamaged = errors.New("chunk damaged")

// ChunkDamaged reports whether LoadChunk's err means the snapshot is damaged
// (the chunk is missing, cut short or altered), as opposed to a failure to
// read it (an I/O error, too many open files), which must leave the
// snapshot for the next start instead of setting it aside.
func ChunkDamaged(err error) bool {
	return errors.Is(err, ErrChunkDamaged) || errors.Is(err, fs.ErrNotExist)
}

// StoreChunk writes data as the side file name and returns its reference.
func StoreChunk(files Files, name string, data []byte) (ChunkRef, error) {
	if uint64(len(data)) > ChunkBytesMax {
		panic(fmt.Sprintf("projection: chunk %s of %d bytes, more than %d", name, len(data), uint64(ChunkBytesMax)))
	}
	if err := files.WriteChunk(name, data); err != nil {
		return ChunkRef{}, fmt.Errorf("write chunk %s: %w", name, err)
	}
	return ChunkRef{Name: name, Bytes: uint64(len(data)), CRC: crc32.Checksum(data, castagnoli)}, nil
}

// AppendChunkRef appends r's encoding (uvarint name length, name, uvarint
// bytes, little-endian u32 CRC) to b.
func AppendChunkRef(b []byte, r ChunkRef) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.Name)))
	b = append(b, r.Name...)
	b = binary.AppendUvarint(b, r.Bytes)
	return binary.LittleEndian.AppendUint32(b, r.CRC)
}

// ReadChunkRef reads what AppendChunkRef wrote. Its errors, and
// LoadChunk's, say what is wrong; the caller wraps them in its own
// ErrBadSnapshot.
func ReadChunkRef(br *bufio.Reader) (ChunkRef, error) {
	var r ChunkRef
	l, err := binary.ReadUvarint(br)
	if err != nil || l == 0 || l > ChunkNameBytesMax {
		return r, fmt.Errorf("chunk name length %d: %v", l, err)
	}
	name := make([]byte, l)
	if _, err := io.ReadFull(br, name); err != nil {
		return r, fmt.Errorf("chunk name: %v", err)
	}
	r.Name = string(name)
	if r.Bytes, err = binary.ReadUvarint(br); err != nil || r.Bytes > ChunkBytesMax {
		return r, fmt.Errorf("chunk %s: length %d: %v", r.Name, r.Bytes, err)
	}
	var crc [4]byte
	if _, err := io.ReadFull(br, crc[:]); err != nil {
		return r, fmt.Errorf("chunk %s: crc: %v", r.Name, err)
	}
	r.CRC = binary.LittleEndian.Uint32(crc[:])
	return r, nil
}

// LoadChunk reads the side file r names and checks it against r.
func LoadChunk(files Files, r ChunkRef) ([]byte, error) {
	data, err := files.ReadChunk(r.Name)
	if err != nil {
		return nil, fmt.Errorf("read chunk %s: %w", r.Name, err)
	}
	if uint64(len(data)) != r.Bytes {
		return nil, fmt.Errorf("%w: %s holds %d bytes, the snapshot says %d", ErrChunkDamaged, r.Name, len(data), r.Bytes)
	}
	if crc := crc32.Checksum(data, castagnoli); crc != r.CRC {
		return nil, fmt.Errorf("%w: %s: crc %08x, the snapshot says %08x", ErrChunkDamaged, r.Name, crc, r.CRC)
	}
	return data, nil
}
