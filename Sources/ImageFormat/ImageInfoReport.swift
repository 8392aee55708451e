import ESPCore
import SecureBoot

/// `espforge image info` as a value: what an image file holds, for ESP32-family images
/// (``ImageInfoReport``) and ESP8266 images (``ESP8266InfoReport``), with text and JSON renderers.
public enum ImageInspection: Sendable, Equatable {
    case esp32Family(ImageInfoReport)
    case esp8266(ESP8266InfoReport)

    /// Parses `bytes` (as ``AnyESPImage/parse(_:)``) and, for an image followed by a Secure Boot V2
    /// signature sector, checks every signature block. Throws ``ImageError`` for a truncated or
    /// corrupt image.
    public static func inspect(_ bytes: [UInt8]) throws(ImageError) -> ImageInspection {
        switch try AnyESPImage.parse(bytes) {
        case let .esp8266(image, reason):
            return .esp8266(ESP8266InfoReport(image, reason: reason))
        case let .esp32Family(image):
            let sector = image.hasSignatureSector
                ? SignatureSectorReport.inspect(file: bytes, sectorOffset: image.signatureSectorOffset) : nil
            return .esp32Family(ImageInfoReport(image, secureBoot: sector))
        }
    }

    /// The text `image info` prints (ends with a newline).
    public var text: String {
        switch self {
        case let .esp32Family(r): r.text
        case let .esp8266(r): r.text
        }
    }

    /// The JSON `image info --json` prints (without the final newline).
    public func json() throws -> String {
        switch self {
        case let .esp32Family(r): try JSONText.render(r)
        case let .esp8266(r): try JSONText.render(r)
        }
    }
}

/// What `image info` shows for an ESP32-family image.
public struct ImageInfoReport: Codable, Sendable, Equatable {
    public struct Header: Codable, Sendable, Equatable {
        public var segmentCount: Int
        public var flashMode: String
        public var flashModeCode: Int
        public var flashSize: String
        public var flashSizeCode: Int
        public var flashFrequency: String
        public var flashFrequencyCode: Int
        public var entryPoint: String
    }
    public struct ExtendedHeader: Codable, Sendable, Equatable {
        public var chipID: Int
        public var chip: String
        public var wpPin: String
        public var spiPinDrive: [Int]
        public var minRevision: Int
        public var minRevisionFull: String
        public var maxRevisionFull: String
        public var hashAppended: Bool
    }
    public struct Segment: Codable, Sendable, Equatable {
        public var index: Int
        public var fileOffset: Int
        public var dataOffset: Int
        public var length: Int
        public var loadAddress: String
        public var memoryTypes: [String]
    }
    public struct Integrity: Codable, Sendable, Equatable {
        public var checksumOffset: Int
        public var storedChecksum: String
        public var computedChecksum: String
        public var checksumValid: Bool
        public var storedSHA256: String?
        public var computedSHA256: String?
        public var sha256Valid: Bool?
    }
    public var fileSize: Int
    public var header: Header
    public var extendedHeader: ExtendedHeader
    public var segments: [Segment]
    public var integrity: Integrity
    public var imageEnd: Int
    public var signatureSectorOffset: Int
    public var hasSignatureSector: Bool
    public var bytesAfterImage: Int
    public var trailingDataOffset: Int?
    public var appDescriptor: AppDescriptor?
    public var bootloaderDescriptor: BootloaderDescriptor?
    public var secureBoot: SignatureSectorReport?
    public var warnings: [String]

    public init(_ i: ESPImage, secureBoot: SignatureSectorReport?) {
        func h(_ v: some BinaryInteger, _ w: Int) -> String { NumberParsing.hex(v, width: w) }
        func rev(_ v: UInt16) -> String { v == 0xFFFF ? "unset (0xffff)" : "v\(v / 100).\(v % 100)" }
        fileSize = i.fileLength
        header = Header(segmentCount: i.segmentCount,
                        flashMode: i.flashModeName?.uppercased() ?? "unknown",
                        flashModeCode: Int(i.flashModeCode),
                        flashSize: i.flashSizeName ?? "unknown",
                        flashSizeCode: Int(i.flashSizeCode >> 4),
                        flashFrequency: i.flashFrequencyName ?? "unknown",
                        flashFrequencyCode: Int(i.flashFrequencyCode),
                        entryPoint: h(i.entryPoint, 8))
        extendedHeader = ExtendedHeader(chipID: Int(i.chipID), chip: i.chip?.displayName ?? "unknown",
                                        wpPin: h(i.wpPin, 2) + (i.wpPin == 0xEE ? " (disabled)" : ""),
                                        spiPinDrive: i.spiPinDrive.flatMap { [Int($0 & 0xF), Int($0 >> 4)] },
                                        minRevision: Int(i.minRevision),
                                        minRevisionFull: rev(i.minRevisionFull), maxRevisionFull: rev(i.maxRevisionFull),
                                        hashAppended: i.hashAppended)
        segments = i.segments.map {
            Segment(index: $0.index, fileOffset: $0.headerOffset, dataOffset: $0.dataOffset, length: $0.length,
                    loadAddress: h($0.loadAddress, 8), memoryTypes: $0.memoryTypes)
        }
        integrity = Integrity(checksumOffset: i.checksumOffset, storedChecksum: h(i.storedChecksum, 2),
                              computedChecksum: h(i.computedChecksum, 2), checksumValid: i.checksumValid,
                              storedSHA256: i.storedDigest?.hexString, computedSHA256: i.computedDigest?.hexString,
                              sha256Valid: i.digestValid)
        imageEnd = i.imageEnd
        signatureSectorOffset = i.signatureSectorOffset
        hasSignatureSector = i.hasSignatureSector
        bytesAfterImage = i.fileLength - i.imageEnd
        trailingDataOffset = i.trailingDataOffset
        appDescriptor = i.appDescriptor
        bootloaderDescriptor = i.bootloaderDescriptor
        self.secureBoot = secureBoot
        warnings = i.warnings
    }

    public var text: String {
        func h(_ v: some BinaryInteger, _ w: Int = 8) -> String { NumberParsing.hex(v, width: w) }
        var t = ""
        func line(_ s: String = "") { t += s + "\n" }
        line("File size:       \(fileSize) bytes")
        line("Chip:            \(extendedHeader.chip) (chip id \(extendedHeader.chipID))")
        line("Entry point:     \(header.entryPoint)")
        line("Flash mode:      \(header.flashMode)")
        line("Flash frequency: \(header.flashFrequency)")
        line("Flash size:      \(header.flashSize)")
        line("WP pin:          \(extendedHeader.wpPin)")
        line("Chip revision:   min \(extendedHeader.minRevisionFull) (legacy min_rev \(extendedHeader.minRevision)), max \(extendedHeader.maxRevisionFull)")
        line("Hash appended:   \(extendedHeader.hashAppended ? "yes" : "no")")
        line()
        line("Segments: \(header.segmentCount)")
        line(SegmentTable.header)
        for s in segments {
            line(SegmentTable.row(index: s.index, fileOffset: s.fileOffset, length: s.length, loadAddress: s.loadAddress, memoryTypes: s.memoryTypes))
        }
        line()
        line("Checksum:        \(integrity.storedChecksum) " + (integrity.checksumValid ? "(valid)" : "(INVALID, computed \(integrity.computedChecksum))"))
        if let stored = integrity.storedSHA256, let computed = integrity.computedSHA256 {
            line("SHA-256:         \(stored) " + (stored == computed ? "(valid)" : "(INVALID, computed \(computed))"))
        } else {
            line("SHA-256:         not appended")
        }
        line("Image end:       \(h(imageEnd))")
        if bytesAfterImage > 0 {
            if let t = trailingDataOffset {
                line("After the image: \(bytesAfterImage) bytes; data from \(h(t))" + (hasSignatureSector ? " (signature sector)" : " (not a Secure Boot V2 sector; e.g. a V1 signature)"))
            } else {
                line("After the image: \(bytesAfterImage) bytes of 0xFF padding")
            }
        }
        if let a = appDescriptor {
            line()
            line("Application descriptor:")
            line("  Project name:   \(a.projectName)")
            line("  App version:    \(a.version)")
            line("  ESP-IDF:        \(a.idfVersion)")
            line("  Compile time:   \(a.date) \(a.time)")
            line("  ELF SHA-256:    \(a.elfSHA256)")
            line("  Secure version: \(a.secureVersion)")
            line("  eFuse blk rev:  min \(a.minEfuseBlockRevisionFull / 100).\(a.minEfuseBlockRevisionFull % 100), max \(a.maxEfuseBlockRevisionFull / 100).\(a.maxEfuseBlockRevisionFull % 100)")
            if a.mmuPageSizeLog2 != 0 && a.mmuPageSizeLog2 < 32 { line("  MMU page size:  \((1 << Int(a.mmuPageSizeLog2)) / 1024) KB") }
        }
        if let b = bootloaderDescriptor {
            line()
            line("Bootloader descriptor:")
            line("  Version:        \(b.version)")
            line("  ESP-IDF:        \(b.idfVersion)")
            line("  Compile time:   \(b.dateTime)")
            line("  Secure version: \(b.secureVersion)")
        }
        line()
        if hasSignatureSector {
            line("Secure Boot V2 signature sector at \(h(signatureSectorOffset)):")
            if let sb = secureBoot {
                for b in sb.blocks {
                    line("  block \(b.index): \(b.scheme)")
                    line("    key digest:     \(b.keyDigest)")
                    line("    CRC:            \(b.crcValid ? "valid" : "INVALID")")
                    line("    image digest:   \(b.imageDigestMatches ? "matches" : "DOES NOT MATCH")")
                    if let v = b.signatureValid { line("    signature:      \(v ? "valid" : "INVALID")") }
                }
                if sb.blocks.isEmpty { line("  no signature blocks") }
                for p in sb.problems { line("  problem: \(p)") }
            } else {
                line("  (signature blocks not decoded)")
            }
        } else {
            line("Secure Boot V2 signature: none")
        }
        for w in warnings { line("warning: \(w)") }
        return t
    }
}

/// What `image info` shows for an ESP8266 image (no extended header, descriptors or SHA-256).
public struct ESP8266InfoReport: Codable, Sendable, Equatable {
    public struct Segment: Codable, Sendable, Equatable {
        public var index: Int
        public var fileOffset: Int
        public var dataOffset: Int
        public var length: Int
        public var loadAddress: String
        public var memoryTypes: [String]
        /// True for a version-2 image's IROM segment (before the second header, not checksummed).
        public var beforeSecondHeader: Bool
    }
    public var chip = "ESP8266"
    public var recognisedBecause: String
    public var fileSize: Int
    public var imageVersion: Int
    public var segmentCount: Int
    public var flashMode: String
    public var flashModeCode: Int
    public var flashSize: String
    public var flashSizeCode: Int
    public var flashFrequency: String
    public var flashFrequencyCode: Int
    public var entryPoint: String
    public var segments: [Segment]
    public var checksumOffset: Int
    public var storedChecksum: String
    public var computedChecksum: String
    public var checksumValid: Bool
    public var imageEnd: Int
    public var warnings: [String]

    public init(_ i: ESP8266Image, reason: String) {
        func h(_ v: some BinaryInteger, _ w: Int) -> String { NumberParsing.hex(v, width: w) }
        recognisedBecause = reason
        fileSize = i.fileLength
        imageVersion = i.version
        segmentCount = i.segments.count + (i.iromSegment == nil ? 0 : 1)
        flashMode = i.flashModeName?.uppercased() ?? "unknown"
        flashModeCode = Int(i.flashModeCode)
        flashSize = i.flashSizeName ?? "unknown"
        flashSizeCode = Int(i.flashSizeCode >> 4)
        flashFrequency = i.flashFrequencyName ?? "unknown"
        flashFrequencyCode = Int(i.flashFrequencyCode)
        entryPoint = h(i.entryPoint, 8)
        let all = (i.iromSegment.map { [($0, true)] } ?? []) + i.segments.map { ($0, false) }
        segments = all.map { s, irom in
            Segment(index: s.index, fileOffset: s.headerOffset, dataOffset: s.dataOffset, length: s.length,
                    loadAddress: h(s.loadAddress, 8), memoryTypes: s.memoryTypes, beforeSecondHeader: irom)
        }
        checksumOffset = i.checksumOffset
        storedChecksum = h(i.storedChecksum, 2)
        computedChecksum = h(i.computedChecksum, 2)
        checksumValid = i.checksumValid
        imageEnd = i.imageEnd
        warnings = i.warnings
    }

    public var text: String {
        func h(_ v: some BinaryInteger, _ w: Int = 8) -> String { NumberParsing.hex(v, width: w) }
        var t = ""
        func line(_ s: String = "") { t += s + "\n" }
        line("File size:       \(fileSize) bytes")
        line("Chip:            ESP8266 (image version \(imageVersion); no extended header)")
        line("Recognised:      \(recognisedBecause)")
        line("Entry point:     \(entryPoint)")
        line("Flash mode:      \(flashMode)")
        line("Flash frequency: \(flashFrequency)")
        line("Flash size:      \(flashSize)")
        line()
        line("Segments: \(segmentCount)")
        line(SegmentTable.header)
        for s in segments {
            line(SegmentTable.row(index: s.index, fileOffset: s.fileOffset, length: s.length, loadAddress: s.loadAddress, memoryTypes: s.memoryTypes)
                 + (s.beforeSecondHeader ? "  (IROM, before the second header)" : ""))
        }
        line()
        line("Checksum:        \(storedChecksum) " + (checksumValid ? "(valid)" : "(INVALID, computed \(computedChecksum))"))
        line("Image end:       \(h(imageEnd))")
        line("ESP8266 images are read only: espforge does not build, sign, encrypt or flash them.")
        for w in warnings { line("warning: \(w)") }
        return t
    }
}

/// The segment table of `image info`'s text, shared by every image kind.
public enum SegmentTable {
    public static let header = "  #  file offs   length      load addr   memory type"

    public static func row(index: Int, fileOffset: Int, length: Int, loadAddress: String, memoryTypes: [String]) -> String {
        let types = memoryTypes.isEmpty ? "-" : memoryTypes.joined(separator: ", ")
        return "\(String(index).leftPad(3))  \(NumberParsing.hex(fileOffset, width: 8))  \(NumberParsing.hex(length, width: 8))  \(loadAddress)  \(types)"
    }
}

extension String {
    fileprivate func leftPad(_ n: Int) -> String { String(repeating: " ", count: max(0, n - count)) + self }
}
