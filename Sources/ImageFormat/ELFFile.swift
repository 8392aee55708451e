import ESPCore

/// A 32-bit little-endian ELF file: header, section headers and program headers.
///
/// Only what image building needs is decoded. Every offset and size read from the file is
/// bounds-checked, so arbitrary bytes produce an ``ImageError`` rather than a crash.
public struct ELFFile: Sendable {
    public struct Section: Sendable, Equatable {
        public var name: String
        public var type: UInt32
        public var flags: UInt32
        public var address: UInt32
        public var fileOffset: UInt32
        public var size: UInt32
        public var alignment: UInt32
        /// Contents, read for loadable sections only (PROGBITS/init/fini arrays with an address).
        public var data: [UInt8]
    }

    public struct ProgramHeader: Sendable, Equatable {
        public var type: UInt32
        public var fileOffset: UInt32
        public var virtualAddress: UInt32
        public var physicalAddress: UInt32
        public var fileSize: UInt32
        public var memorySize: UInt32
        public var flags: UInt32
        public var alignment: UInt32
        public var data: [UInt8]
    }

    public static let sectionTypeProgbits: UInt32 = 0x1
    public static let sectionTypeStrtab: UInt32 = 0x3
    public static let sectionTypeNobits: UInt32 = 0x8
    public static let sectionTypeInitArray: UInt32 = 0xE
    public static let sectionTypeFiniArray: UInt32 = 0xF
    public static let sectionTypePreinitArray: UInt32 = 0x10
    public static let programTypeLoad: UInt32 = 0x1
    /// Upper bound on the bytes copied out of loadable sections (an image holds at most 16
    /// segments below 16 MiB each), so crafted headers cannot exhaust memory.
    static let maxLoadableBytes = 256 << 20
    static let progTypes: [UInt32] = [sectionTypeProgbits, sectionTypeInitArray, sectionTypeFiniArray, sectionTypePreinitArray]

    public let machine: UInt16
    public let entry: UInt32
    public let sections: [Section]
    public let programHeaders: [ProgramHeader]

    public init(_ bytes: [UInt8]) throws(ImageError) {
        var r = ByteReader(bytes)
        do {
            let ident = try r.read(16, what: "ELF identification")
            let id = Array(ident)
            guard id[0] == 0x7F, id[1] == 0x45, id[2] == 0x4C, id[3] == 0x46 else {
                throw ImageError.invalidELF("bad magic (expected 7f 45 4c 46)", offset: 0)
            }
            guard id[4] == 1 else { throw ImageError.invalidELF("not a 32-bit ELF (EI_CLASS=\(id[4]))", offset: 4) }
            guard id[5] == 1 else { throw ImageError.invalidELF("not little-endian (EI_DATA=\(id[5]))", offset: 5) }
            _ = try r.u16("e_type")
            machine = try r.u16("e_machine")
            guard machine == 0x5E || machine == 0xF3 else {
                throw ImageError.invalidELF("e_machine \(hex(machine)) is neither Xtensa (0x5e) nor RISC-V (0xf3)", offset: 18)
            }
            _ = try r.u32("e_version")
            entry = try r.u32("e_entry")
            let phoff = Int(try r.u32("e_phoff"))
            let shoff = Int(try r.u32("e_shoff"))
            _ = try r.u32("e_flags")
            _ = try r.u16("e_ehsize")
            let phentsize = Int(try r.u16("e_phentsize"))
            let phnum = Int(try r.u16("e_phnum"))
            let shentsize = Int(try r.u16("e_shentsize"))
            let shnum = Int(try r.u16("e_shnum"))
            let shstrndx = Int(try r.u16("e_shstrndx"))
            guard shentsize == 0x28 else {
                throw ImageError.invalidELF("section header entry size \(hex(shentsize)), expected 0x28", offset: 46)
            }
            guard shnum > 0 else { throw ImageError.invalidELF("the file has no section headers", offset: 48) }
            guard shstrndx < shnum else {
                throw ImageError.invalidELF("section name table index \(shstrndx) is not below the section count \(shnum)", offset: 50)
            }

            // Section headers.
            struct Raw { var name, type, flags, addr, offset, size, align: UInt32 }
            var raws: [Raw] = []
            raws.reserveCapacity(shnum)
            for i in 0..<shnum {
                try r.seek(to: shoff + i * 0x28)
                let name = try r.u32("section header \(i)")
                let type = try r.u32("section header \(i)")
                let flags = try r.u32("section header \(i)")
                let addr = try r.u32("section header \(i)")
                let off = try r.u32("section header \(i)")
                let size = try r.u32("section header \(i)")
                _ = try r.u32("section header \(i)")
                _ = try r.u32("section header \(i)")
                let align = try r.u32("section header \(i)")
                raws.append(Raw(name: name, type: type, flags: flags, addr: addr, offset: off, size: size, align: align))
            }
            let strtab = raws[shstrndx]
            let names = try Self.slice(bytes, Int(strtab.offset), Int(strtab.size), what: "section name table")

            var secs: [Section] = []
            secs.reserveCapacity(shnum)
            var loadable = 0
            for (i, s) in raws.enumerated() {
                let name = Self.string(in: names, at: Int(s.name))
                var data: [UInt8] = []
                if Self.progTypes.contains(s.type) && s.size > 0 && s.addr != 0 {
                    loadable += Int(s.size)
                    guard loadable <= Self.maxLoadableBytes else {
                        throw ImageError.invalidELF("loadable sections add up to more than \(Self.maxLoadableBytes >> 20) MiB", offset: shoff + i * 0x28)
                    }
                    data = Array(try Self.slice(bytes, Int(s.offset), Int(s.size), what: "data of section \(i) '\(name)'"))
                }
                secs.append(Section(name: name, type: s.type, flags: s.flags, address: s.addr,
                                    fileOffset: s.offset, size: s.size, alignment: s.align, data: data))
            }
            sections = secs

            // Program headers.
            var phs: [ProgramHeader] = []
            if phnum > 0 {
                guard phentsize >= 0x20 else {
                    throw ImageError.invalidELF("program header entry size \(hex(phentsize)), expected 0x20", offset: 42)
                }
                for i in 0..<phnum {
                    try r.seek(to: phoff + i * phentsize)
                    let type = try r.u32("program header \(i)")
                    let off = try r.u32("program header \(i)")
                    let vaddr = try r.u32("program header \(i)")
                    let paddr = try r.u32("program header \(i)")
                    let filesz = try r.u32("program header \(i)")
                    let memsz = try r.u32("program header \(i)")
                    let flags = try r.u32("program header \(i)")
                    let align = try r.u32("program header \(i)")
                    var data: [UInt8] = []
                    if type == Self.programTypeLoad && filesz > 0 {
                        data = Array(try Self.slice(bytes, Int(off), Int(filesz), what: "data of program header \(i)"))
                    }
                    phs.append(ProgramHeader(type: type, fileOffset: off, virtualAddress: vaddr, physicalAddress: paddr,
                                             fileSize: filesz, memorySize: memsz, flags: flags, alignment: align, data: data))
                }
            }
            programHeaders = phs
        } catch let e as ByteReaderError {
            throw ImageError.from(e)
        } catch let e as ImageError {
            throw e
        } catch {
            throw ImageError.invalidELF(String(describing: error), offset: nil)
        }
    }

    /// Sections that carry loadable bytes, in file order: PROGBITS and the init/fini arrays with a
    /// non-zero address and size (what esptool turns into image segments).
    public var loadableSections: [Section] {
        sections.filter { s in
            s.address != 0 && s.size != 0 &&
                Self.progTypes.contains(s.type)
        }
    }

    /// LOAD program headers with a non-zero physical address and file size.
    public var loadableSegments: [ProgramHeader] {
        programHeaders.filter { $0.type == Self.programTypeLoad && $0.physicalAddress != 0 && $0.fileSize > 0 }
    }

    static func slice(_ bytes: [UInt8], _ offset: Int, _ size: Int, what: String) throws(ImageError) -> ArraySlice<UInt8> {
        guard offset >= 0, size >= 0, offset <= bytes.count, size <= bytes.count - offset else {
            throw ImageError.truncated(what: what, offset: offset, needed: size)
        }
        return bytes[offset..<(offset + size)]
    }

    static func string(in table: ArraySlice<UInt8>, at offset: Int) -> String {
        guard offset >= 0, offset < table.count else { return "" }
        let start = table.startIndex + offset
        let end = table[start...].firstIndex(of: 0) ?? table.endIndex
        return String(decoding: table[start..<end], as: UTF8.self)
    }
}
