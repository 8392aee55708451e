import ESPCore
import SecureBoot

/// `espforge secure-boot verify`: which of an image's (up to three) signature blocks verify, with
/// which of the given keys, and, with the chip's eFuses, which digest slot holds each block's key,
/// whether that slot is revoked, and whether the chip would accept the image.
public struct SecureBootVerifyReport: Encodable, Sendable {
    /// One `--key`: the honoured blocks it verifies (what `espsecure verify-signature` reports as
    /// "verification successful" for it, among the blocks the chip checks).
    public struct KeyResult: Encodable, Sendable, Equatable {
        public var name: String
        public var scheme: String
        public var keyDigest: String
        public var verifiedBlocks: [Int]
        /// Blocks made with this key that verify but that the chip does not check.
        public var ignoredBlocks: [Int]
    }

    /// One burned Secure Boot digest slot and the blocks whose key it holds.
    public struct SlotRow: Encodable, Sendable, Equatable {
        public var slot: Int
        public var keyBlock: Int
        public var digest: String?
        public var readProtected: Bool
        public var revoked: Bool
        public var blocks: [Int]
    }

    public var file: String
    public var chip: String
    public var sectorOffset: Int
    public var honouredBlocks: Int
    public var blocks: [SignatureBlockTrust]
    public var keys: [KeyResult]
    /// nil without eFuses.
    public var slots: [SlotRow]?
    /// The chip accepts the image (a checked block verifies with a key in a live slot); nil without eFuses.
    public var accepted: Bool?
    public var problems: [String]
    public var ok: Bool
    /// Why `ok` is false, one line each.
    public var failures: [String]

    /// Checks `image` (a signed image ending in its signature sector) under `policy`, with `keys`
    /// (name and key) and the chip's eFuses when known.
    public static func run(image: [UInt8], name: String, policy: SecureBootPolicy,
                           keys: [(name: String, key: VerifyingKey)], efuses: KeyBlockFuseFacts?) throws -> SecureBootVerifyReport {
        for k in keys { try policy.check(k.key.scheme) }
        let offset = try SignedImage.sectorOffset(of: image)
        let inspection = SecureBootVerifier.inspect(image: image, sectorOffset: offset)
        guard !inspection.checks.isEmpty else { throw SecureBootError.noSignatureSector(offset: offset) }
        let blocks = SignatureBlockTrust.evaluate(inspection, honouredBlocks: policy.honouredBlocks, fuses: efuses)
        var results: [KeyResult] = []
        var failures: [String] = []
        for k in keys {
            let digest = try k.key.keyDigest()
            var verified: [Int] = [], ignored: [Int] = []
            for (c, b) in zip(inspection.checks, blocks) {
                guard c.block.crcValid, c.digestMatches, c.block.scheme == k.key.scheme, c.block.keyDigest == digest,
                      k.key.isValidSignature(c.block.signature, contentDigest: c.contentDigest) else { continue }
                if b.honoured { verified.append(c.index) } else { ignored.append(c.index) }
            }
            results.append(KeyResult(name: k.name, scheme: k.key.scheme.displayName, keyDigest: digest.hexString,
                                     verifiedBlocks: verified, ignoredBlocks: ignored))
            if verified.isEmpty {
                failures.append("\(k.name): no signature block the chip checks verifies with this key"
                                + (ignored.isEmpty ? "" : " (block \(ignored.map(String.init).joined(separator: ", ")) does, but \(policy.displayName) ignores it)"))
            }
        }
        var slots: [SlotRow]?
        var accepted: Bool?
        if let efuses {
            slots = efuses.digestSlots.map { s in
                SlotRow(slot: s.slot, keyBlock: s.keyBlock, digest: s.readProtected ? nil : s.digest.hexString,
                        readProtected: s.readProtected, revoked: s.revoked,
                        blocks: blocks.filter { $0.slot == s.slot }.map(\.index))
            }
            let ok = blocks.contains(where: \.trusted)
            accepted = ok
            if !ok { failures.append("the chip would not accept this image: no checked block verifies with a key in a digest slot that is not revoked") }
        }
        if keys.isEmpty && efuses == nil && !blocks.contains(where: { $0.honoured && $0.verifies }) {
            failures.append("no signature block the chip checks verifies with its own key")
        }
        return SecureBootVerifyReport(file: name, chip: policy.chip, sectorOffset: offset, honouredBlocks: policy.honouredBlocks,
                                      blocks: blocks, keys: results, slots: slots, accepted: accepted,
                                      problems: inspection.sector.problems, ok: failures.isEmpty, failures: failures)
    }

    public var text: String {
        var lines = ["\(file): signature sector at 0x\(String(sectorOffset, radix: 16)), \(blocks.count) block(s); "
                     + "\(chip) checks " + (honouredBlocks == 1 ? "block 0 only" : "blocks 0-\(honouredBlocks - 1)")]
        for b in blocks {
            var state: [String] = []
            state.append(b.crcValid ? "CRC valid" : "CRC INVALID")
            state.append(b.imageDigestMatches ? "image digest matches" : "image digest DOES NOT MATCH")
            state.append(b.signatureValid.map { $0 ? "signature valid" : "signature INVALID" } ?? "signature not checked")
            lines.append("  block \(b.index): \(b.scheme), key digest \(b.keyDigest)" + (b.honoured ? "" : " (ignored by \(chip))"))
            lines.append("    " + state.joined(separator: ", "))
            let by = keys.filter { $0.verifiedBlocks.contains(b.index) || $0.ignoredBlocks.contains(b.index) }.map(\.name)
            if !by.isEmpty { lines.append("    verifies with: " + by.joined(separator: ", ")) }
            if slots != nil {
                if let slot = b.slot {
                    lines.append("    eFuse: digest slot \(slot)" + (b.slotRevoked == true ? ", REVOKED" : ", not revoked")
                                 + (b.trusted ? " -> trusted" : ""))
                } else {
                    lines.append("    eFuse: no digest slot holds this key")
                }
            }
        }
        if let slots {
            lines.append(slots.isEmpty ? "  digest slots: none burned"
                         : "  digest slots: " + slots.map { s in
                            "\(s.slot) (BLOCK_KEY\(s.keyBlock)\(s.revoked ? ", revoked" : "")\(s.readProtected ? ", read-protected" : ""))" }
                            .joined(separator: ", "))
        }
        lines += problems.map { "  note: \($0)" }
        if let accepted { lines.append(accepted ? "the chip accepts this image" : "the chip would NOT accept this image") }
        lines += failures.map { "FAILED: \($0)" }
        if ok { lines.append("OK") }
        return lines.joined(separator: "\n") + "\n"
    }

    public func json() throws -> String { try JSONText.render(self) }
}
