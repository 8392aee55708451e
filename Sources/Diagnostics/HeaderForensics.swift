import Crypto
import ESPCore
import ImageFormat
import SecureBoot

/// Flash parameters as header bytes 2..3 encode them.
public struct HeaderFlashParameters: Sendable, Equatable, Codable, CustomStringConvertible {
    public var modeCode: UInt8
    public var sizeFreqByte: UInt8
    public var mode: String
    public var size: String
    public var frequency: String

    public init(modeCode: UInt8, sizeFreqByte: UInt8, chip: ChipSpec) {
        self.modeCode = modeCode
        self.sizeFreqByte = sizeFreqByte
        mode = chip.flashMode(code: modeCode)?.name.uppercased() ?? "mode \(hex(modeCode))"
        size = chip.flashSize(code: sizeFreqByte & 0xF0)?.name ?? "size code \(hex(sizeFreqByte >> 4))"
        frequency = chip.flashFrequency(code: sizeFreqByte & 0x0F)?.name ?? "freq code \(hex(sizeFreqByte & 0x0F))"
    }

    /// `DIO 40m 8MB (header bytes 2..3 = 02 30)`.
    public var description: String {
        "\(mode) \(frequency) \(size) (header bytes 2..3 = \(hexByte(modeCode)) \(hexByte(sizeFreqByte)))"
    }

    /// Which of mode / frequency / size differ from `other`, as `size 8MB → 4MB`.
    public func differences(to other: HeaderFlashParameters) -> [String] {
        var out: [String] = []
        if mode != other.mode { out.append("mode \(mode) → \(other.mode)") }
        if frequency != other.frequency { out.append("frequency \(frequency) → \(other.frequency)") }
        if size != other.size { out.append("size \(size) → \(other.size)") }
        return out
    }
}

func hexByte(_ b: UInt8) -> String {
    let s = String(b, radix: 16)
    return s.count == 1 ? "0" + s : s
}

/// Finds out whether an image's header flash parameters were changed after the image was signed
/// (or after its appended SHA-256 was computed), and what they were.
public enum HeaderForensics {
    public enum Verdict: Sendable, Equatable {
        /// The signature block's digest matches the content as it is.
        case intact
        /// The content matches the signature only with other header bytes 2..3.
        /// `simpleHashRewritten`: the appended SHA-256 was recomputed for the new header too
        /// (esptool ≥ 4 does this; the bootloader then says "image valid, signature bad"); when
        /// false it still matches the original header ("image corrupted on flash").
        case headerRewritten(built: HeaderFlashParameters, found: HeaderFlashParameters, simpleHashRewritten: Bool)
        /// Some other signed byte changed (or the block is not for this content).
        case contentChanged
        /// Not a signed image (no signature block at the expected place).
        case unsigned
    }

    public struct Result: Sendable, Equatable {
        public var verdict: Verdict
        public var signatureSectorOffset: Int?
        /// Candidates tried (mode × size × frequency × {digest kept, digest recomputed}).
        public var candidatesTried: Int
    }

    /// Searches every mode × size × frequency the chip table knows for the header bytes whose
    /// signed content hashes to the digest in signature block 0. Both cases are tried: the
    /// appended SHA-256 left as it was, and recomputed for the candidate header.
    public static func analyzeSigned(_ bytes: [UInt8]) -> Result {
        guard let image = try? ESPImage(bytes), let chip = image.chip ?? ChipSpec.withImageChipID(image.chipID) else {
            return Result(verdict: .unsigned, signatureSectorOffset: nil, candidatesTried: 0)
        }
        let sectorOffset = image.signatureSectorOffset
        let sector = SignatureSector.parse(file: bytes, offset: sectorOffset)
        guard let first = sector.entries.first else {
            return Result(verdict: .unsigned, signatureSectorOffset: nil, candidatesTried: 0)
        }
        let block = first.block
        let hash = block.scheme.contentHash
        var content = Array(bytes[0..<sectorOffset])
        if hash.digest(content).bytes == block.imageDigest {
            return Result(verdict: .intact, signatureSectorOffset: sectorOffset, candidatesTried: 1)
        }
        let found = HeaderFlashParameters(modeCode: bytes[2], sizeFreqByte: bytes[3], chip: chip)
        let digestRange: Range<Int>? = image.hashAppended ? (image.checksumOffset + 1)..<(image.checksumOffset + 33) : nil
        let originalDigest = digestRange.map { Array(bytes[$0]) }
        var tried = 0
        for mode in chip.flashModes {
            for size in chip.flashSizes {
                for freq in chip.flashFrequencies {
                    let b3 = size.code | freq.code
                    content[2] = mode.code
                    content[3] = b3
                    // (a) appended SHA-256 as found.
                    if let r = digestRange, let d = originalDigest { content.replaceSubrange(r, with: d) }
                    tried += 1
                    if hash.digest(content).bytes == block.imageDigest {
                        let built = HeaderFlashParameters(modeCode: mode.code, sizeFreqByte: b3, chip: chip)
                        if built == found { continue }
                        return Result(verdict: .headerRewritten(built: built, found: found, simpleHashRewritten: false),
                                      signatureSectorOffset: sectorOffset, candidatesTried: tried)
                    }
                    // (b) the tool recomputed the appended SHA-256 for the new header.
                    if let r = digestRange {
                        let simple = Array(SHA256.hash(data: content[0..<r.lowerBound]))
                        content.replaceSubrange(r, with: simple)
                        tried += 1
                        if hash.digest(content).bytes == block.imageDigest {
                            let built = HeaderFlashParameters(modeCode: mode.code, sizeFreqByte: b3, chip: chip)
                            return Result(verdict: .headerRewritten(built: built, found: found, simpleHashRewritten: true),
                                          signatureSectorOffset: sectorOffset, candidatesTried: tried)
                        }
                    }
                }
            }
        }
        return Result(verdict: .contentChanged, signatureSectorOffset: sectorOffset, candidatesTried: tried)
    }

    /// For an unsigned image with an appended SHA-256 that no longer matches: the header bytes
    /// 2..3 under which it would match, if any.
    public static func originalHeaderForSimpleHash(_ bytes: [UInt8]) -> HeaderFlashParameters? {
        guard let image = try? ESPImage(bytes), image.digestValid == false, let stored = image.storedDigest,
              let chip = image.chip else { return nil }
        var content = Array(bytes[0...image.checksumOffset])
        for mode in chip.flashModes {
            for size in chip.flashSizes {
                for freq in chip.flashFrequencies {
                    content[2] = mode.code
                    content[3] = size.code | freq.code
                    if Array(SHA256.hash(data: content)) == stored {
                        return HeaderFlashParameters(modeCode: mode.code, sizeFreqByte: size.code | freq.code, chip: chip)
                    }
                }
            }
        }
        return nil
    }
}
