import Crypto
import ESPCore

/// A parsed ESP application or bootloader image (the format the ROM and the second-stage
/// bootloader load), with stored and recomputed integrity values side by side.
public struct ESPImage: Sendable {
    public static let magic: UInt8 = 0xE9
    public static let checksumSeed: UInt8 = 0xEF
    public static let maxSegments = 16
    public static let headerLength = 24
    public static let signatureSectorSize = 4096

    public struct Segment: Sendable, Equatable {
        public var index: Int
        /// File offset of the segment's 8-byte header.
        public var headerOffset: Int
        /// File offset of the segment's first data byte.
        public var dataOffset: Int { headerOffset + 8 }
        public var loadAddress: UInt32
        public var length: Int
        /// Memory types the load address falls in (by the chip's memory map), e.g. ["DROM"].
        public var memoryTypes: [String]
    }

    // Image header (8 bytes).
    public var segmentCount: Int
    public var flashModeCode: UInt8
    /// Header byte 3: high nibble = flash size code, low nibble = frequency code.
    public var flashSizeFreq: UInt8
    public var entryPoint: UInt32
    // Extended header (16 bytes).
    public var wpPin: UInt8
    public var spiPinDrive: [UInt8]
    public var chipID: UInt16
    public var minRevision: UInt8
    public var minRevisionFull: UInt16
    public var maxRevisionFull: UInt16
    public var hashAppended: Bool

    /// The chip named by `chipID`, when known.
    public var chip: ChipSpec?
    public var segments: [Segment]

    public var checksumOffset: Int
    public var storedChecksum: UInt8
    public var computedChecksum: UInt8
    public var checksumValid: Bool { storedChecksum == computedChecksum }

    /// SHA-256 appended after the checksum (when `hashAppended`), and the one computed over
    /// `[0, checksumOffset]`.
    public var storedDigest: [UInt8]?
    public var computedDigest: [UInt8]?
    public var digestValid: Bool? { storedDigest.map { $0 == computedDigest } }

    /// Offset just after the checksum byte and the appended digest: the end of the image proper.
    public var imageEnd: Int
    /// Where a Secure Boot V2 signature sector would start: `imageEnd` aligned up to 4096.
    public var signatureSectorOffset: Int
    /// True when the file holds at least 4096 bytes at `signatureSectorOffset` starting with 0xE7.
    public var hasSignatureSector: Bool
    public var fileLength: Int
    /// First byte after `imageEnd` that is not 0xFF padding (a signature or other data), if any.
    public var trailingDataOffset: Int?

    public var appDescriptor: AppDescriptor?
    public var bootloaderDescriptor: BootloaderDescriptor?
    /// Things the ROM or the bootloader would object to but that do not stop parsing.
    public var warnings: [String]

    public var flashSizeCode: UInt8 { flashSizeFreq & 0xF0 }
    public var flashFrequencyCode: UInt8 { flashSizeFreq & 0x0F }
    public var flashModeName: String? { chip?.flashMode(code: flashModeCode)?.name ?? standardFlashModes.first { $0.code == flashModeCode }?.name }
    public var flashSizeName: String? { chip?.flashSize(code: flashSizeCode)?.name }
    public var flashFrequencyName: String? { chip?.flashFrequency(code: flashFrequencyCode)?.name }

    /// Parses `bytes` as an image. Throws ``ImageError`` (with a byte offset) for anything that
    /// prevents reading the structure; integrity mismatches are reported, not thrown.
    public init(_ bytes: [UInt8]) throws(ImageError) {
        if let reason = ESP8266Image.detectionReason(bytes), (try? ESP8266Image(bytes)) != nil {
            throw ImageError.esp8266Image(reason: reason)
        }
        var r = ByteReader(bytes)
        do {
            let m = try r.u8("image header")
            guard m == Self.magic else {
                throw ImageError.invalidField("not an ESP image: magic byte is \(hex(m)), expected 0xe9", offset: 0,
                                              hint: "pass a firmware image (.bin) produced by elf2image / the ESP-IDF build")
            }
            segmentCount = Int(try r.u8("image header"))
            flashModeCode = try r.u8("image header")
            flashSizeFreq = try r.u8("image header")
            entryPoint = try r.u32("image header")
            wpPin = try r.u8("extended header")
            spiPinDrive = Array(try r.read(3, what: "extended header"))
            chipID = try r.u16("extended header")
            minRevision = try r.u8("extended header")
            minRevisionFull = try r.u16("extended header")
            maxRevisionFull = try r.u16("extended header")
            _ = try r.read(4, what: "extended header")
            let ha = try r.u8("extended header")
            guard ha <= 1 else {
                throw ImageError.invalidField("hash-appended flag is \(hex(ha)), expected 0 or 1", offset: 23, hint: nil)
            }
            hashAppended = ha == 1
            guard segmentCount <= Self.maxSegments else {
                throw ImageError.invalidField("segment count \(segmentCount) exceeds the maximum of \(Self.maxSegments)", offset: 1, hint: nil)
            }
            chip = ChipSpec.withImageChipID(chipID)
            var warnings: [String] = []
            if chip == nil { warnings.append("unknown chip id \(chipID); memory types and flash parameters cannot be decoded") }

            var segs: [Segment] = []
            var checksum = Self.checksumSeed
            for i in 0..<segmentCount {
                let headerOffset = r.offset
                guard r.remaining >= 8 else {
                    throw ImageError.truncated(what: "header of segment \(i)", offset: headerOffset, needed: 8)
                }
                let addr = try r.u32("segment header")
                let len = Int(try r.u32("segment header"))
                guard len <= r.remaining else {
                    throw ImageError.invalidField(
                        "segment \(i) length \(hex(len)) runs past end of file at byte offset \(hex(bytes.count)) (data starts at \(hex(r.offset)))",
                        offset: headerOffset + 4, hint: "the file is truncated or the segment header is corrupt")
                }
                let data = try r.read(len, what: "data of segment \(i)")
                checksum = Self.xorChecksum(data, seed: checksum)
                let types = chip.map { c in c.memoryMap.filter { $0.contains(addr) }.map(\.name) } ?? []
                if len % 4 != 0 { warnings.append("segment \(i) length \(hex(len)) is not a multiple of 4") }
                if len >= 0x100_0000 { warnings.append("segment \(i) length \(hex(len)) is not below 16 MiB") }
                segs.append(Segment(index: i, headerOffset: headerOffset, loadAddress: addr, length: len, memoryTypes: types))
            }
            segments = segs
            computedChecksum = checksum

            // Checksum: last byte of the 16-byte block after the segments.
            let pos = r.offset
            checksumOffset = (pos | 15)
            guard checksumOffset < bytes.count else {
                throw ImageError.truncated(what: "checksum byte", offset: checksumOffset, needed: 1)
            }
            storedChecksum = bytes[checksumOffset]
            var end = checksumOffset + 1
            if hashAppended {
                guard bytes.count - end >= 32 else {
                    throw ImageError.truncated(what: "appended SHA-256 digest", offset: end, needed: 32)
                }
                storedDigest = Array(bytes[end..<(end + 32)])
                computedDigest = Array(SHA256.hash(data: bytes[0..<end]))
                end += 32
            } else {
                storedDigest = nil
                computedDigest = nil
            }
            imageEnd = end
            signatureSectorOffset = (end + 4095) & ~4095
            hasSignatureSector = bytes.count - signatureSectorOffset >= Self.signatureSectorSize
                && bytes[signatureSectorOffset] == 0xE7
            fileLength = bytes.count
            trailingDataOffset = end < bytes.count ? bytes[end...].firstIndex(where: { $0 != 0xFF }) : nil

            // Descriptors, found as esptool finds them: the application descriptor at the start of
            // the first DROM segment; otherwise the bootloader descriptor at the start of the last
            // DRAM segment of at least 80 bytes.
            appDescriptor = nil
            bootloaderDescriptor = nil
            var appSegment: Segment?
            var bootloaderSegment: Segment?
            for s in segs {
                if s.memoryTypes.contains("DROM"), appSegment == nil {
                    appSegment = s
                } else if s.memoryTypes.contains("DRAM"), s.length >= BootloaderDescriptor.size {
                    bootloaderSegment = s
                }
            }
            if let a = appSegment {
                if a.length >= AppDescriptor.size {
                    appDescriptor = AppDescriptor(bytes[a.dataOffset..<(a.dataOffset + AppDescriptor.size)])
                }
            } else if let b = bootloaderSegment {
                bootloaderDescriptor = BootloaderDescriptor(bytes[b.dataOffset..<(b.dataOffset + BootloaderDescriptor.size)])
            }
            // Flash-mapped segments must sit at the same offset within an MMU page in the file as in
            // the address space. The page size is the descriptor's when it states one; otherwise the
            // smallest the chip can be configured for (ESP-IDF picks e.g. 32 KB pages for 2 MB flash
            // on the C2/C6/H2 without recording it in v5.2 descriptors).
            if let c = chip {
                let page: Int
                if let l = appDescriptor?.mmuPageSizeLog2, l > 0, l < 32 {
                    page = 1 << Int(l)
                } else {
                    page = c.mmuPageSizes.min() ?? c.mmuPageSize
                }
                for s in segs where c.isFlashMapped(s.loadAddress) && s.dataOffset % page != Int(s.loadAddress) % page {
                    warnings.append("segment \(s.index) at \(NumberParsing.hex(s.loadAddress)) is flash-mapped but its data offset \(hex(s.dataOffset)) is not congruent to it modulo the MMU page size \(hex(page))")
                }
            }
            self.warnings = warnings
        } catch let e as ByteReaderError {
            throw ImageError.from(e)
        } catch let e as ImageError {
            throw e
        } catch {
            throw ImageError.invalidField(String(describing: error), offset: 0, hint: nil)
        }
    }

    /// XOR of all bytes into `seed` (the image checksum).
    public static func xorChecksum<C: Collection>(_ data: C, seed: UInt8 = checksumSeed) -> UInt8 where C.Element == UInt8 {
        var c = seed
        for b in data { c ^= b }
        return c
    }
}

/// `esp_app_desc_t`: the 256-byte application description at the start of the first DROM segment.
public struct AppDescriptor: Sendable, Equatable, Codable {
    public static let magicWord: UInt32 = 0xABCD_5432
    public static let size = 256
    public var secureVersion: UInt32
    public var version: String
    public var projectName: String
    public var time: String
    public var date: String
    public var idfVersion: String
    public var elfSHA256: String
    public var minEfuseBlockRevisionFull: UInt16
    public var maxEfuseBlockRevisionFull: UInt16
    /// log2 of the MMU page size (0 in images from older IDF versions).
    public var mmuPageSizeLog2: UInt8

    /// nil unless the bytes start with the magic word.
    public init?(_ b: ArraySlice<UInt8>) {
        let d = Array(b)
        guard d.count >= Self.size, d[0..<4].loadLE(UInt32.self) == Self.magicWord else { return nil }
        secureVersion = d[4..<8].loadLE(UInt32.self)
        version = cString(d[16..<48])
        projectName = cString(d[48..<80])
        time = cString(d[80..<96])
        date = cString(d[96..<112])
        idfVersion = cString(d[112..<144])
        elfSHA256 = Array(d[144..<176]).hexString
        minEfuseBlockRevisionFull = d[176..<178].loadLE(UInt16.self)
        maxEfuseBlockRevisionFull = d[178..<180].loadLE(UInt16.self)
        mmuPageSizeLog2 = d[180]
    }
}

/// `esp_bootloader_desc_t`: the 80-byte bootloader description (newer ESP-IDF bootloaders).
public struct BootloaderDescriptor: Sendable, Equatable, Codable {
    public static let magicByte: UInt8 = 0x50
    public static let size = 80
    public var secureVersion: UInt8
    public var version: UInt32
    public var idfVersion: String
    public var dateTime: String

    public init?(_ b: ArraySlice<UInt8>) {
        let d = Array(b)
        guard d.count >= Self.size, d[0] == Self.magicByte else { return nil }
        secureVersion = d[3]
        version = d[4..<8].loadLE(UInt32.self)
        idfVersion = cString(d[8..<40])
        dateTime = cString(d[40..<64])
    }
}

/// Text up to the first NUL, with control and invalid characters replaced.
func cString(_ bytes: ArraySlice<UInt8>) -> String {
    let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
    let cleaned = bytes[bytes.startIndex..<end].map { ($0 >= 0x20 && $0 < 0x7F) ? $0 : UInt8(ascii: "?") }
    return String(decoding: cleaned, as: UTF8.self)
}
