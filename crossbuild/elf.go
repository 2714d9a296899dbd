package crossbuild

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// elfIdentity is what an ELF header says about the machine a binary runs on.
type elfIdentity struct {
	Machine elf.Machine
	Class   elf.Class
	Order   binary.ByteOrder
}

// elfIdentities maps each supported architecture to its ELF identity.
var elfIdentities = map[string]elfIdentity{
	"amd64":   {elf.EM_X86_64, elf.ELFCLASS64, binary.LittleEndian},
	"arm64":   {elf.EM_AARCH64, elf.ELFCLASS64, binary.LittleEndian},
	"arm":     {elf.EM_ARM, elf.ELFCLASS32, binary.LittleEndian},
	"ppc64le": {elf.EM_PPC64, elf.ELFCLASS64, binary.LittleEndian},
	"s390x":   {elf.EM_S390, elf.ELFCLASS64, binary.BigEndian},
	"riscv64": {elf.EM_RISCV, elf.ELFCLASS64, binary.LittleEndian},
}

// CheckELF verifies that the file at path is a complete, statically linked
// ELF executable for platform p: its machine, class and byte order must
// match, it must have no program interpreter (a dynamic binary could not run
// in an image that holds nothing else), and its loadable segments must lie
// within the file.
func CheckELF(path string, p Platform) error {
	want, ok := elfIdentities[p.Arch]
	if !ok || p.OS != "linux" {
		return fmt.Errorf("%s: no ELF identity known for %s", path, p)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() == 0 {
		return fmt.Errorf("%s: empty file", path)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) {
			return fmt.Errorf("%s: not an ELF executable: %v", path, err)
		}
		return fmt.Errorf("%s: truncated or unreadable ELF file: %v", path, err)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return fmt.Errorf("%s: ELF type %v is not an executable", path, ef.Type)
	}
	if ef.Machine != want.Machine || ef.Class != want.Class || ef.ByteOrder != want.Order {
		return fmt.Errorf("%s: ELF header says %v %v %v, but the name says %s (%v %v %v)",
			path, ef.Machine, ef.Class, ef.ByteOrder, p, want.Machine, want.Class, want.Order)
	}
	for _, prog := range ef.Progs {
		switch prog.Type {
		case elf.PT_INTERP:
			return fmt.Errorf("%s: dynamically linked (has a program interpreter); build with CGO_ENABLED=0", path)
		case elf.PT_LOAD:
			if prog.Off+prog.Filesz > uint64(st.Size()) {
				return fmt.Errorf("%s: truncated: a segment ends at byte %d of %d", path, prog.Off+prog.Filesz, st.Size())
			}
		}
	}
	return nil
}
