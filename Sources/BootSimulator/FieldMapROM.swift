import ESPCore
import ImageFormat
import SecureBoot

/// ROM phase of the ESP32-S3 / ESP32-C3 (chips with key-purpose eFuses): banner and reset line,
/// the bootloader header at 0x0 (read through the XTS-AES engine when SPI_BOOT_CRYPT_CNT is
/// odd), with SECURE_BOOT_EN the check of up to three signature blocks against the digest slots
/// (SECURE_BOOT_DIGEST0-2, revoked slots skipped) before any segment is loaded, then the
/// segments and the jump.
///
/// Fidelity: documentation and published boot logs only (ESP-IDF security guides, the chips'
/// TRMs, console output quoted in Espressif's issue tracker). No recording of S3/C3 silicon or
/// of an emulated S3/C3 ROM exists here; lines the sources do not show (the per-block rejection
/// reasons, the halt line of the C3) follow the ESP32's recorded wording. See
/// docs/virtual-device-chips.md.
enum FieldMapROMPhase {
    static func halt(_ s: inout BootState, _ why: String) -> BootStop { ROMPhase.halt(&s, why) }

    static func run(_ s: inout BootState, resetReason: String) throws -> ROMHandoff {
        let boot = s.chip.bootloaderOffset
        for line in s.chip.romBanner { s.rom(line) }
        let strap = s.chip.spiBootStrapping ?? s.config.strapping
        s.rom("\(resetReason),boot:0x\(String(strap, radix: 16)) (SPI_FAST_FLASH_BOOT)")
        guard let head = s.read(boot, 24) else {
            throw halt(&s, "the flash cannot be read at 0x\(String(boot, radix: 16))")
        }
        try ROMPhase.requireBootloaderHeader(&s, head, at: boot, cipher: "XTS-AES decryption")
        s.rom("SPIWP:0xee")
        let modes = ["QIO", "QOUT", "DIO", "DOUT", "FAST_RD", "SLOW_RD"]
        let div = ROMPhase.clockDivider(head[3])
        s.rom("mode:\(head[2] < 6 ? modes[Int(head[2])] : "DIO"), clock div:\(div)")
        let segments = try segmentTable(&s, boot: boot, count: Int(head[1]))
        if s.secureBootEnabled {
            try verifySecureBoot(&s, boot: boot, head: head, segments: segments)
            s.rom("secure boot verification succeeded")
        }
        for seg in segments { s.rom("load:0x\(hex8(seg.address)),len:0x\(String(seg.length, radix: 16))") }
        let entry = head[4..<8].loadLE(UInt32.self)
        s.rom("entry 0x\(hex8(entry))")
        return ROMPhase.isIDFBootloader(&s, segments) ? .idfBootloader : .ramImage(entry: entry)
    }

    static func segmentTable(_ s: inout BootState, boot: Int, count: Int) throws -> [ROMPhase.Segment] {
        var out: [ROMPhase.Segment] = []
        var pos = boot + 24
        for i in 0..<count {
            guard let sh = s.read(pos, 8) else {
                throw halt(&s, "bootloader segment \(i) header lies beyond the end of flash")
            }
            let addr = sh[0..<4].loadLE(UInt32.self)
            let len = Int(sh[4..<8].loadLE(UInt32.self))
            guard len <= 0x40000, s.read(pos + 8, len) != nil else {
                throw halt(&s, "bootloader segment \(i) (length \(len)) cannot be read from flash")
            }
            out.append(ROMPhase.Segment(address: addr, length: len, dataOffset: pos + 8))
            pos += 8 + len
        }
        return out
    }

    /// SECURE_BOOT_AGGRESSIVE_REVOKE: a block whose key is in a live slot but which fails to
    /// verify gets that slot revoked on the spot (ESP-IDF Secure Boot V2 guide; the ROM's own
    /// wording for it is not known, so nothing extra is printed).
    static func aggressivelyRevoke(_ s: inout BootState, slot: Int) {
        guard s.raw("SECURE_BOOT_AGGRESSIVE_REVOKE") != 0 else { return }
        s.write("SECURE_BOOT_KEY_REVOKE\(slot)", 1)
    }

    /// One Secure Boot V2 digest slot as the ROM sees it.
    struct DigestSlot {
        var slot: Int
        var digest: [UInt8]
        var revoked: Bool
    }

    /// The digest slots: key blocks whose purpose is SECURE_BOOT_DIGESTn (the block's first 32
    /// bytes), with SECURE_BOOT_KEY_REVOKEn.
    static func digestSlots(_ s: BootState) -> [DigestSlot] {
        guard let map = s.chip.map else { return [] }
        var out: [DigestSlot] = []
        for k in 0..<6 {
            let purpose = Int(s.raw("KEY_PURPOSE_\(k)"))
            guard let slot = s.chip.digestPurposes.firstIndex(of: purpose) else { continue }
            var d: [UInt8] = []
            for w in s.blockRaw(map.firstKeyBlock + k).prefix(8) { d.appendLE(w) }
            out.append(DigestSlot(slot: slot, digest: d, revoked: s.raw("SECURE_BOOT_KEY_REVOKE\(slot)") != 0))
        }
        return out.sorted { $0.slot < $1.slot }
    }

    /// The ROM's check: SHA-256 of the image up to its 4 KiB-aligned end; the sector behind it
    /// holds up to three blocks (scanning stops at the first bad one); the image boots when one
    /// block verifies with a key whose digest is in a live (not revoked) slot.
    static func verifySecureBoot(_ s: inout BootState, boot: Int, head: [UInt8], segments: [ROMPhase.Segment]) throws {
        let live = digestSlots(s).filter { !$0.revoked }
        s.rom("Valid secure boot key blocks: " + live.map { String($0.slot) }.joined(separator: " "))
        let last = segments.last.map { $0.dataOffset + $0.length } ?? (boot + 24)
        var end = ((last - boot) | 15) + 1
        if head[23] == 1 { end += 32 }
        let padded = (end + 4095) & ~4095
        s.clock += 0.008
        func fail(_ lines: [String], _ why: String) -> BootStop {
            for l in lines { s.rom(l) }
            s.rom("secure boot verification failed")
            return halt(&s, "ROM Secure Boot V2 check failed: \(why)")
        }
        guard let image = s.read(boot, padded), let sector = s.read(boot + padded, SignatureSector.size) else {
            throw fail([], "the signature sector at 0x\(String(boot + padded, radix: 16)) lies beyond the end of flash")
        }
        guard let magic = sector.first, magic == SignatureBlock.magic else {
            let found = sector.first ?? 0xFF
            throw fail(["No signature block magic byte found at signature sector (found 0x\(String(found, radix: 16)) not 0xe7). Image not V2 signed?"],
                       "no signature block (sector starts with 0x\(String(found, radix: 16))): the bootloader is not signed")
        }
        let inspection = SecureBootVerifier.inspect(image: image + sector, sectorOffset: image.count)
        var lines: [String] = []
        var reasons: [String] = []
        for check in inspection.checks.prefix(SignatureSector.maxBlocks) {
            let n = check.index
            guard check.block.crcValid else {
                lines.append("Sig block \(n) invalid: Invalid CRC")
                reasons.append("signature block \(n) is damaged (CRC32 mismatch)")
                break
            }
            guard check.block.version == SignatureBlock.versionRSA else {
                lines.append("Sig block \(n) invalid: Invalid version")
                reasons.append("signature block \(n) is not an RSA-3072 block")
                continue
            }
            guard let slot = live.first(where: { $0.digest == check.block.keyDigest }) else {
                let revoked = digestSlots(s).first { $0.revoked && $0.digest == check.block.keyDigest }
                lines.append("Sig block \(n) signed with untrusted key")
                reasons.append(revoked.map { "signature block \(n)'s key is in digest slot \($0.slot), which is revoked" }
                               ?? "signature block \(n)'s key digest is in no SECURE_BOOT_DIGESTn key block")
                continue
            }
            guard check.digestMatches else {
                lines.append("Sig block \(n) invalid: Image digest does not match")
                reasons.append("the bootloader does not match the digest in signature block \(n)")
                aggressivelyRevoke(&s, slot: slot.slot)
                continue
            }
            guard check.signatureValid == true else {
                lines.append("Sig block \(n) invalid: RSA-PSS signature does not verify")
                reasons.append("the RSA-PSS signature of block \(n) does not verify")
                aggressivelyRevoke(&s, slot: slot.slot)
                continue
            }
            return
        }
        throw fail(lines, reasons.isEmpty ? "no signature block verifies" : reasons.joined(separator: "; "))
    }
}
