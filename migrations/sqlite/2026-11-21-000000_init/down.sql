DROP TABLE projector_offsets;
DROP TABLE orders;
DROP TABLE snapshots;
DROP TABLE journal;
DROP TABLE products;
DROP TABLE users;
