import ESPCore
import ImageFormat

/// What `image info` shows for an ESP8266 image (no extended header, descriptors or SHA-256).
struct ESP8266InfoReport: Codable {
    struct Segment: Codable {
        var index: Int
        var fileOffset: Int
        var dataOffset: Int
        var length: Int
        var loadAddress: String
        var memoryTypes: [String]
        /// True for a version-2 image's IROM segment (before the second header, not checksummed).
        var beforeSecondHeader: Bool
    }
    var chip = "ESP8266"
    var recognisedBecause: String
    var fileSize: Int
    var imageVersion: Int
    var segmentCount: Int
    var flashMode: String
    var flashModeCode: Int
    var flashSize: String
    var flashSizeCode: Int
    var flashFrequency: String
    var flashFrequencyCode: Int
    var entryPoint: String
    var segments: [Segment]
    var checksumOffset: Int
    var storedChecksum: String
    var computedChecksum: String
    var checksumValid: Bool
    var imageEnd: Int
    var warnings: [String]

    init(_ i: ESP8266Image, reason: String) {
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

    var text: String {
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
