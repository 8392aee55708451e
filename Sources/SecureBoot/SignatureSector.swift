import ESPCore

/// The 4096-byte signature sector at the end of a signed image: up to three blocks at 0, 1216 and
/// 2432, the rest 0xFF.
public struct SignatureSector: Sendable {
    public static let size = 4096
    public static let maxBlocks = 3

    /// One slot as found in the sector.
    public struct Entry: Sendable {
        public let index: Int
        /// Offset of the block in the file.
        public let offset: Int
        public let block: SignatureBlock
    }

    /// Blocks in order, up to and including the first one with a bad CRC; scanning stops at the
    /// first block that is invalid (as the ESP-IDF bootloader does).
    public let entries: [Entry]
    /// Why scanning stopped early, or anything odd (one line each).
    public let problems: [String]

    /// The leading blocks with a correct CRC: what a device considers.
    public var validBlocks: [Entry] {
        Array(entries.prefix { $0.block.crcValid })
    }

    /// Parses the sector of `file` at `offset`. Never throws; problems are listed.
    public static func parse(file: [UInt8], offset: Int) -> SignatureSector {
        var entries: [Entry] = []
        var problems: [String] = []
        guard offset >= 0, offset <= file.count, file.count - offset >= size else {
            return SignatureSector(entries: [], problems: ["no complete 4096-byte sector at offset \(offset)"])
        }
        for i in 0..<maxBlocks {
            let start = offset + i * SignatureBlock.size
            let slot = file[start..<(start + SignatureBlock.size)]
            if slot.first != SignatureBlock.magic {
                if i == 0 { problems.append("block 0: no signature block (magic 0x\(String(slot.first ?? 0, radix: 16)))") }
                break
            }
            do {
                let block = try SignatureBlock.parse(slot, baseOffset: start)
                entries.append(Entry(index: i, offset: start, block: block))
                if !block.crcValid {
                    problems.append("block \(i): CRC32 mismatch (stored 0x\(String(block.storedCRC, radix: 16)), "
                                    + "computed 0x\(String(block.computedCRC, radix: 16))); scanning stopped")
                    break
                }
                if !block.paddingIsZero { problems.append("block \(i): the 16 bytes after the CRC are not zero") }
            } catch {
                let text = (error as? DiagnosticConvertible)?.diagnostic.message ?? "\(error)"
                problems.append("block \(i): \(text); scanning stopped")
                break
            }
        }
        return SignatureSector(entries: entries, problems: problems)
    }

    /// The sector bytes for `blocks` (at most three), padded with 0xFF.
    public static func build(_ blocks: [SignatureBlock]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(size)
        for b in blocks.prefix(maxBlocks) { out += b.bytes }
        out += [UInt8](repeating: 0xFF, count: size - out.count)
        return out
    }
}

/// Image-level helpers: padding, and splitting a signed image into content and sector.
public enum SignedImage {
    /// `image` padded with 0xFF to a multiple of 4096 (espsecure's rule); returns the pad length.
    /// `reserve` extra bytes of capacity are allocated so a signature sector can be appended in place.
    public static func padded(_ image: [UInt8], reserve: Int = 0) -> (content: [UInt8], padding: Int) {
        let rem = image.count % SignatureSector.size
        let pad = image.isEmpty ? SignatureSector.size : (rem == 0 ? 0 : SignatureSector.size - rem)
        var out: [UInt8] = []
        out.reserveCapacity(image.count + pad + max(0, reserve))
        out.append(contentsOf: image)
        out.append(contentsOf: repeatElement(0xFF, count: pad))
        return (out, pad)
    }

    /// The offset of the signature sector of a signed image: its last 4096 bytes.
    public static func sectorOffset(of image: [UInt8]) throws -> Int {
        guard image.count >= SignatureSector.size else { throw SecureBootError.imageTooSmall(length: image.count) }
        guard image.count % SignatureSector.size == 0 else { throw SecureBootError.imageNotAligned(length: image.count) }
        return image.count - SignatureSector.size
    }

    /// Whether `image` already ends in a signature sector whose valid blocks all sign the content
    /// before it (and there is at least one). Returns that sector.
    public static func existingSignature(_ image: [UInt8]) -> (offset: Int, sector: SignatureSector)? {
        guard image.count >= SignatureSector.size, image.count % SignatureSector.size == 0 else { return nil }
        let offset = image.count - SignatureSector.size
        let sector = SignatureSector.parse(file: image, offset: offset)
        let valid = sector.validBlocks
        guard !valid.isEmpty else { return nil }
        var digests = DigestCache(content: image[0..<offset])
        for e in valid {
            let digest = digests.digest(e.block.scheme.contentHash)
            if digest.bytes != e.block.imageDigest { return nil }
        }
        return (offset, sector)
    }
}

/// Hashes the content at most once per hash function.
struct DigestCache {
    let content: ArraySlice<UInt8>
    private var cache: [ContentHash: ContentDigest] = [:]

    init(content: ArraySlice<UInt8>) { self.content = content }

    mutating func digest(_ hash: ContentHash) -> ContentDigest {
        if let d = cache[hash] { return d }
        let d = hash.digest(content)
        cache[hash] = d
        return d
    }
}
