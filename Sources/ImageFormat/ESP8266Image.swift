import ESPCore

/// An ESP8266 firmware image (read-only): version 1 (`0xE9`, what the ROM loads) or version 2
/// (`0xEA`, an IROM segment followed by a version-1 style header, loaded by a software
/// bootloader). No extended header, no chip id and no appended SHA-256.
public struct ESP8266Image: Sendable {
    public var version: Int
    /// The segment-count byte of the version-2 first header (normally 4).
    public var v2SegmentField: Int?
    public var segmentCount: Int
    public var flashModeCode: UInt8
    public var flashSizeFreq: UInt8
    public var entryPoint: UInt32
    /// Version 2: the IROM segment stored before the second header (load address 0 in the file,
    /// not covered by the checksum).
    public var iromSegment: ESPImage.Segment?
    /// Segments covered by the checksum, in file order.
    public var segments: [ESPImage.Segment]
    public var checksumOffset: Int
    public var storedChecksum: UInt8
    public var computedChecksum: UInt8
    public var checksumValid: Bool { storedChecksum == computedChecksum }
    public var imageEnd: Int
    public var fileLength: Int
    public var warnings: [String]

    public var flashSizeCode: UInt8 { flashSizeFreq & 0xF0 }
    public var flashFrequencyCode: UInt8 { flashSizeFreq & 0x0F }
    public var flashModeName: String? { standardFlashModes.first { $0.code == flashModeCode }?.name }
    public var flashSizeName: String? { ESP8266Facts.flashSizes.first { $0.code == flashSizeCode }?.name }
    public var flashFrequencyName: String? { ESP8266Facts.flashFrequencies.first { $0.code == flashFrequencyCode }?.name }

    /// Why `bytes` is taken for an ESP8266 image rather than an ESP32-family one, or nil when it is
    /// not. The rule is esptool's: magic `0xEA`; or magic `0xE9` where bytes 8…23 are not a
    /// plausible extended header (byte 23 is not a 0/1 hash-appended flag, or byte 12 is not the
    /// chip id of any chip in ``ChipSpec/imageChips``).
    public static func detectionReason(_ bytes: [UInt8]) -> String? {
        guard let magic = bytes.first else { return nil }
        if magic == ESP8266Facts.imageV2Magic { return "magic byte 0xea (ESP8266 version-2 image)" }
        guard magic == ESP8266Facts.imageV1Magic, bytes.count >= ESPImage.headerLength else { return nil }
        if bytes[23] > 1 {
            return "byte 23 is \(hex(bytes[23])), not an ESP32-family hash-appended flag (0 or 1), so there is no extended header"
        }
        if !ChipSpec.imageChips.contains(where: { $0.imageChipID == UInt16(bytes[12]) }) {
            return "byte 12 (\(bytes[12])) is not the chip id of any ESP32-family chip, so there is no extended header"
        }
        return nil
    }

    public init(_ bytes: [UInt8]) throws(ImageError) {
        var r = ByteReader(bytes)
        do {
            let magic = try r.u8("image header")
            guard magic == ESP8266Facts.imageV1Magic || magic == ESP8266Facts.imageV2Magic else {
                throw ImageError.invalidField("not an ESP8266 image: magic byte is \(hex(magic)), expected 0xe9 or 0xea", offset: 0, hint: nil)
            }
            var warnings: [String] = []
            var count = Int(try r.u8("image header"))
            flashModeCode = try r.u8("image header")
            flashSizeFreq = try r.u8("image header")
            entryPoint = try r.u32("image header")
            if magic == ESP8266Facts.imageV2Magic {
                version = 2
                v2SegmentField = count
                if count != ESP8266Facts.imageV2SegmentField {
                    warnings.append("version-2 header has segment field \(count) (usually \(ESP8266Facts.imageV2SegmentField))")
                }
                var irom = try Self.segment(&r, index: 0, bytes: bytes, types: [])
                irom.loadAddress = 0
                iromSegment = irom
                let second = r.offset
                let m2 = try r.u8("second image header")
                guard m2 == ESP8266Facts.imageV1Magic else {
                    throw ImageError.invalidField("second header of the ESP8266 version-2 image has magic \(hex(m2)), expected 0xe9",
                                                  offset: second, hint: "the file is truncated or corrupt")
                }
                count = Int(try r.u8("second image header"))
                let mode = try r.u8("second image header"), sf = try r.u8("second image header"), entry = try r.u32("second image header")
                if mode != flashModeCode { warnings.append("flash mode in the first header (\(hex(flashModeCode))) differs from the second (\(hex(mode))); the second is used") }
                if sf != flashSizeFreq { warnings.append("flash size/frequency in the first header (\(hex(flashSizeFreq))) differs from the second (\(hex(sf))); the second is used") }
                if entry != entryPoint { warnings.append("entry point in the first header (\(NumberParsing.hex(entryPoint))) differs from the second (\(NumberParsing.hex(entry))); the second is used") }
                flashModeCode = mode
                flashSizeFreq = sf
                entryPoint = entry
            } else {
                version = 1
                v2SegmentField = nil
                iromSegment = nil
            }
            guard count <= ESPImage.maxSegments else {
                throw ImageError.invalidField("segment count \(count) exceeds the maximum of \(ESPImage.maxSegments)", offset: r.offset - 7, hint: nil)
            }
            segmentCount = count
            var segs: [ESPImage.Segment] = []
            var checksum = ESPImage.checksumSeed
            let first = iromSegment == nil ? 0 : 1
            for i in 0..<count {
                let headerOffset = r.offset
                guard r.remaining >= 8 else { throw ImageError.truncated(what: "header of segment \(i + first)", offset: headerOffset, needed: 8) }
                let addr = try r.u32("segment header")
                let types = ESP8266Facts.memoryMap.filter { $0.contains(addr) }.map(\.name)
                try r.seek(to: headerOffset)
                let seg = try Self.segment(&r, index: i + first, bytes: bytes, types: types)
                checksum = ESPImage.xorChecksum(bytes[seg.dataOffset..<(seg.dataOffset + seg.length)], seed: checksum)
                segs.append(seg)
            }
            segments = segs
            computedChecksum = checksum
            checksumOffset = r.offset | 15
            guard checksumOffset < bytes.count else { throw ImageError.truncated(what: "checksum byte", offset: checksumOffset, needed: 1) }
            storedChecksum = bytes[checksumOffset]
            imageEnd = checksumOffset + 1
            fileLength = bytes.count
            self.warnings = warnings
        } catch let e as ByteReaderError {
            throw ImageError.from(e)
        } catch let e as ImageError {
            throw e
        } catch {
            throw ImageError.invalidField(String(describing: error), offset: 0, hint: nil)
        }
    }

    private static func segment(_ r: inout ByteReader, index: Int, bytes: [UInt8], types: [String]) throws -> ESPImage.Segment {
        let headerOffset = r.offset
        let addr = try r.u32("segment header")
        let len = Int(try r.u32("segment header"))
        guard len <= r.remaining else {
            throw ImageError.invalidField(
                "segment \(index) length \(hex(len)) runs past end of file at byte offset \(hex(bytes.count)) (data starts at \(hex(r.offset)))",
                offset: headerOffset + 4, hint: "the file is truncated or the segment header is corrupt")
        }
        _ = try r.read(len, what: "data of segment \(index)")
        return ESPImage.Segment(index: index, headerOffset: headerOffset, loadAddress: addr, length: len, memoryTypes: types)
    }
}

/// An image of any chip family `image info` understands.
public enum AnyESPImage: Sendable {
    case esp32Family(ESPImage)
    case esp8266(ESP8266Image, reason: String)

    /// Parses `bytes`, deciding the family as esptool does (see ``ESP8266Image/detectionReason(_:)``).
    public static func parse(_ bytes: [UInt8]) throws(ImageError) -> AnyESPImage {
        if let reason = ESP8266Image.detectionReason(bytes) {
            do { return .esp8266(try ESP8266Image(bytes), reason: reason) } catch {
                // Not a readable ESP8266 image either: report it as an ESP32-family image would be.
                if bytes.first == ESP8266Facts.imageV2Magic { throw error }
            }
        }
        return .esp32Family(try ESPImage(bytes))
    }
}
