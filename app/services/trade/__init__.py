"""Trade: orders from creation (with the typed data the buyer signs) through funding, carts, the parties'
own wallet transactions and the views the API shows, checked against the platform's settings and the tax
corridors."""
