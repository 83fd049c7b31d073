DROP TABLE sale_switch;
ALTER TABLE products DROP COLUMN sale;
