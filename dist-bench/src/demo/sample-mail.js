/** Demo accounts: the passwords are printed by `popgate demo` on purpose. */
export const DEMO_USERS = [
    { name: 'alice', password: 'wonderland' },
    { name: 'bob', password: 'builder' },
];
function message(from, to, subject, date, body) {
    const head = [
        `From: ${from}`,
        `To: ${to}`,
        `Subject: ${subject}`,
        `Date: ${date}`,
        `Message-ID: <${subject.toLowerCase().replace(/[^a-z0-9]+/g, '.')}@demo.popgate>`,
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
    ];
    return Buffer.from([...head, '', ...body].join('\r\n') + '\r\n', 'utf8');
}
/** A few messages per demo user; one has lines starting with "." to show dot-stuffing. */
export function sampleMailboxes() {
    return {
        alice: [
            message('White Rabbit <rabbit@demo.popgate>', 'alice@demo.popgate', 'Running late', 'Sat, 21 Nov 2026 10:00:00 +0000', [
                'Oh dear! Oh dear! I shall be too late!',
                '',
                'This message reached you through popgate: you logged in over TLS,',
                'popgate checked your password and logged in to the legacy backend',
                'with its own master credentials.',
            ]),
            message('Cheshire Cat <cat@demo.popgate>', 'alice@demo.popgate', 'Dots', 'Sat, 21 Nov 2026 11:00:00 +0000', [
                'Lines that start with a dot are byte-stuffed on the wire:',
                '.this line starts with a dot',
                '..and this one with two',
                '.',
                'and the line above is a lone dot.',
            ]),
            message('Queen of Hearts <queen@demo.popgate>', 'alice@demo.popgate', 'Croquet', 'Sun, 22 Nov 2026 09:30:00 +0000', [
                'Croquet at three. Bring a flamingo.',
            ]),
        ],
        bob: [
            message('Wendy <wendy@demo.popgate>', 'bob@demo.popgate', 'Can we fix it', 'Sun, 22 Nov 2026 08:00:00 +0000', [
                'Yes we can.',
            ]),
        ],
    };
}
//# sourceMappingURL=sample-mail.js.map