import Testing
@testable import Manifest

@Suite("Manifest: key custody settings")
struct KeyCustodyManifestTests {
    static let base = """
        version = 1
        [chip]
        flash_size = "4MB"
        [images.bootloader]
        file = "b.bin"
        offset = 0x1000
        [images.partition_table]
        file = "p.bin"
        offset = 0x8000
        [images.app]
        file = "a.bin"
        offset = 0x10000

        """

    @Test("[signing] key = pkcs11: URI with pkcs11_module / pkcs11_pin_file, and [escrow] public_key; written back the same")
    func parseAndWrite() throws {
        let text = Self.base + """
            [signing]
            key = "pkcs11:token=line;object=sbv2-2026;type=private"
            pkcs11_module = "/usr/lib/softhsm/libsofthsm2.so"
            pkcs11_pin_file = "pin.txt"
            [escrow]
            public_key = "escrow_pub.pem"
            """
        let m = try Manifest.parse(text)
        #expect(m.signing == .key(path: "pkcs11:token=line;object=sbv2-2026;type=private"))
        #expect(m.pkcs11 == Manifest.PKCS11Settings(module: "/usr/lib/softhsm/libsofthsm2.so", pinFile: "pin.txt"))
        #expect(m.escrowPublicKey == "escrow_pub.pem")
        #expect(try Manifest.parse(m.toml()) == m)
    }

    @Test("pkcs11_module without a pkcs11: key, a PIN in the URI, and an empty [escrow] are refused with the line")
    func refused() {
        for (extra, line) in [("[signing]\nkey = \"k.pem\"\npkcs11_module = \"/x.so\"\n", 15),
                              ("[signing]\nkey = \"pkcs11:token=a;object=b?pin-value=1234\"\n", 14),
                              ("[escrow]\n", 13)] {
            #expect {
                _ = try Manifest.parse(Self.base + extra)
            } throws: { e in
                guard let m = e as? ManifestError else { return false }
                return m.position?.line == line && !m.message.contains("1234")
            }
        }
    }
}
