/**
 * narinfo files written by stock Nix 2.8 (`nix copy --to 'file:///…?secret-key=…&compression=xz'`),
 * byte for byte, and the throwaway key pair that signed them
 * (`nix-store --generate-binary-cache-key test-cache-1 sk pk`). The secret key
 * exists only for these tests; nothing trusts it.
 */

export const NIX_PUBLIC_KEY = 'test-cache-1:zYiQ2V/q0CGpXTgxnNaBF+bmUreB14NerCerwM4JO/s=';
export const NIX_SECRET_KEY =
  'test-cache-1:PNXJjAmmllZZyFTHwnBAhV7vi4B9qENd6U5mC9u7fdDNiJDZX+rQIaldODGc1oEX5uZSt4HXg16sJ6vAzgk7+w==';

/** An input-addressed path with two references and a deriver. */
export const NIX_NARINFO_WITH_REFERENCES = [
  'StorePath: /nix/store/0b8fd980k13nhvjkpmmli254dbr8k0a4-fx-8eab2d72b673-top0',
  'URL: nar/1y1k1qn5lndfmgj5cqx13hm4nihqpfmxvsb9a3n983s29chwilyd.nar.xz',
  'Compression: xz',
  'FileHash: sha256:1y1k1qn5lndfmgj5cqx13hm4nihqpfmxvsb9a3n983s29chwilyd',
  'FileSize: 384',
  'NarHash: sha256:0dkhw3rngz4jwi4gx0jy8jf1lpdlbagv4z6mlx2yyq4lcgnbsi7l',
  'NarSize: 21112',
  'References: ny6syja1g678qdx830ag4ip6vvdd360n-fx-8eab2d72b673-pair0 qvxccg7yij6xiwihp90fyvpg7im79218-fx-8eab2d72b673-pair1',
  'Deriver: lfacprk4hapvaiflqv8sha8f41ra1jk3-fx-8eab2d72b673.drv',
  'Sig: test-cache-1:bhVuqoQ6svFkBCPM4FQSn2DlvPoRpgZKDUX3JeQwfXEa5a4DAztLMYAwWoYBB+h4zooDuILaagCUbRWA4fUBAg==',
  '',
].join('\n');

/** A content-addressed path (`nix store add-file`): no references (Nix writes `References: ` with a trailing space), no deriver, a CA. */
export const NIX_NARINFO_CONTENT_ADDRESSED = [
  'StorePath: /nix/store/hzc7460rd9hjkskb1llsj3jmfnc1mj4r-f.txt',
  'URL: nar/0dl2fmk8d18i3r14vswbv3xwyyl4js05awsvbpl04zc0515dz1p5.nar.xz',
  'Compression: xz',
  'FileHash: sha256:0dl2fmk8d18i3r14vswbv3xwyyl4js05awsvbpl04zc0515dz1p5',
  'FileSize: 136',
  'NarHash: sha256:11mv167i6962y21iizabrw5h9j9g8csr0h12banvj1lzp2g35ifl',
  'NarSize: 128',
  'References: ',
  'Sig: test-cache-1:nf0gjMOTOl2dMafuQq9LKSLrpaqc7gkecKNXgsn+iWlpo60d9IWG9wdGCpiqftqCsoNNb6+a6f9ltyzTe/FcDQ==',
  'CA: fixed:sha256:06h8a9gk1cq82dfl06p3wyqfhchkwbyzl4acakf3blxwmqy8ahh3',
  '',
].join('\n');

/** Every field the parser knows, in the order Nix writes them (signature invented: parse-only). */
export const FULL_NARINFO = [
  'StorePath: /nix/store/0b8fd980k13nhvjkpmmli254dbr8k0a4-fx-8eab2d72b673-top0',
  'URL: nar/1y1k1qn5lndfmgj5cqx13hm4nihqpfmxvsb9a3n983s29chwilyd.nar.xz',
  'Compression: xz',
  'FileHash: sha256:1y1k1qn5lndfmgj5cqx13hm4nihqpfmxvsb9a3n983s29chwilyd',
  'FileSize: 384',
  'NarHash: sha256:0dkhw3rngz4jwi4gx0jy8jf1lpdlbagv4z6mlx2yyq4lcgnbsi7l',
  'NarSize: 21112',
  'References: 0b8fd980k13nhvjkpmmli254dbr8k0a4-fx-8eab2d72b673-top0 ny6syja1g678qdx830ag4ip6vvdd360n-fx-8eab2d72b673-pair0',
  'Deriver: lfacprk4hapvaiflqv8sha8f41ra1jk3-fx-8eab2d72b673.drv',
  'Sig: test-cache-1:bhVuqoQ6svFkBCPM4FQSn2DlvPoRpgZKDUX3JeQwfXEa5a4DAztLMYAwWoYBB+h4zooDuILaagCUbRWA4fUBAg==',
  'Sig: other-cache-2:AAAA',
  'CA: fixed:r:sha256:06h8a9gk1cq82dfl06p3wyqfhchkwbyzl4acakf3blxwmqy8ahh3',
  '',
].join('\n');
